"""
The configuration schema: one declarative table per section of the file.

Each row names a key, its parser (gateway/config/values.py), its default,
whether a change waits for a restart, and one line saying what it is. The
readers (gateway/config/load.py and the section modules) take from here the
keys a table may hold (anything else is an "unknown key" problem), how each
value is parsed and what stands in when it is left out; reload
(gateway/reload.py) takes the settings that only a restart applies.

A default of DERIVED is worked out by the reader from other settings (the
doc line says from what). A path default is relative to `server.var_dir`
unless the doc line says otherwise. The order of the rows is the order in
which a table is read, so problems are reported in file order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.config import values as v
from gateway.config.reader import Reader
from gateway.domains import DomainType
from gateway.policy.rights import PermissionGroup
from gateway.tls.profiles import PROFILES, VERSIONS


class _Derived:
    def __repr__(self) -> str:
        return "DERIVED"


DERIVED: Any = _Derived()

ROLES = ("frontend", "hub")
# Exchange's AuthMechanism values that exgateway implements. Tls: STARTTLS is
# offered; BasicAuth: AUTH PLAIN/LOGIN; BasicAuthRequireTLS: AUTH only after TLS.
# ExchangeServer: other gateway nodes authenticate with the node secret (gateway/auth/node.py).
AUTH_MECHANISMS = ("None", "Tls", "BasicAuth", "BasicAuthRequireTLS", "ExternalAuthoritative", "ExchangeServer")
MESSAGE_RATE_SOURCES = ("None", "IPAddress", "User", "All")
AUTH_BACKENDS = ("users_file", "ldap")
RECIPIENT_SOURCES = ("users_file", "ldap", "list", "callout")
BARE_LINEFEEDS = ("normalize", "reject")
LOGGING_LEVELS = ("None", "Verbose")
OUTBOUND_TLS = ("none", "opportunistic", "required")
BASIC_AUTH = ("None", "BasicAuth", "BasicAuthRequireTLS")
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
ESMTP_TOGGLES = ("pipelining_enabled", "eight_bit_mime_enabled", "size_enabled", "enhanced_status_codes_enabled", "chunking_enabled")
MAX_WORKERS = v.MAX_WORKERS


def _permission_group(value: Any) -> PermissionGroup:
    return PermissionGroup(v.choice(tuple(g.value for g in PermissionGroup))(value))


def _domain_type(value: Any) -> DomainType:
    return DomainType(v.choice(tuple(t.value for t in DomainType))(value))


def _no_parser(value: Any) -> Any:
    raise AssertionError("read by its section's code")  # pragma: no cover


@dataclass(frozen=True)
class Key:
    """One setting: its name in its table, how it is read, what stands in when it is left out."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    # A change is applied only by a restart (reload reports it and keeps the running value).
    restart: bool = False
    # A list, each item read with `parse`.
    many: bool = False
    # The Config attribute it fills, for a key of a table that is not one attribute of its own.
    attribute: str = ""


@dataclass(frozen=True)
class Table:
    """The keys of one section (`[name]`) or of each table of an array (`[[name]]`)."""

    name: str
    keys: tuple[Key, ...]
    # Tables nested in this one, read by their own code (their own Table).
    subtables: tuple[str, ...] = ()
    # The Config attribute this whole table makes (None: its keys name theirs).
    attribute: str | None = None

    @property
    def names(self) -> frozenset[str]:
        """What this table may hold: anything else is an unknown key."""
        return frozenset(k.name for k in self.keys) | frozenset(self.subtables)

    def __getitem__(self, name: str) -> Key:
        for key in self.keys:
            if key.name == name:
                return key
        raise KeyError(name)

    def default(self, name: str) -> Any:
        """What stands in for `name` when a file leaves it out (a dataclass field's default, too)."""
        default = self[name].default
        assert default is not DERIVED, f"{self.name}.{name}: the reader works out its default"
        return default

    def value(self, reader: Reader, data: dict, where: str, name: str, default: Any = DERIVED,
              parse: Callable[[Any], Any] | None = None) -> Any:
        """One key's value (its default if left out or bad); `default`/`parse` for what the schema leaves to the reader."""
        key = self[name]
        if default is DERIVED:
            default = key.default
        assert default is not DERIVED, f"{self.name}.{name}: the reader works out its default"
        if key.many:
            return reader.items(data, where, name, parse or key.parse, default)
        return reader.get(data, where, name, parse or key.parse, default)

    def values(self, reader: Reader, data: dict, where: str, names: Iterable[str] | None = None,
               defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """The values of `names` (all keys with a default of their own, if None), read in schema order."""
        wanted = set(names) if names is not None else {k.name for k in self.keys if k.default is not DERIVED and k.parse is not _no_parser}
        defaults = defaults or {}
        return {k.name: self.value(reader, data, where, k.name, defaults.get(k.name, DERIVED)) for k in self.keys if k.name in wanted}


def _table(name: str, *keys: Key, subtables: tuple[str, ...] = (), attribute: str | None = None, restart: bool = False) -> Table:
    if restart:
        keys = tuple(dataclasses.replace(k, restart=True) for k in keys)
    return Table(name, keys, subtables, attribute)


SERVER = _table(
    "server",
    Key("fqdn", v.fqdn, DERIVED, "name in banners, EHLO replies and Received headers; default: this machine's FQDN", True, attribute="fqdn"),
    Key("name", v.string, DERIVED, "server name in connector identities (SERVER\\Name); default: fqdn's first label, upper-cased",
        True, attribute="server_name"),
    Key("var_dir", v.string, "var", "queue, mailboxes, logs, spool: relative to the config file's directory", True, attribute="var_dir"),
    Key("workers", _no_parser, 1, '"auto" (one per CPU; half each for a hub and a frontend on one machine) or a count of processes serving this node', True, attribute="workers"),
    Key("shutdown_grace", v.parse_duration, 30.0, "at a stop, how long a message in DATA/BDAT may take to finish",
        attribute="shutdown_grace"),
    Key("node_secret_file", v.string, "node.secret", "the secret every gateway node shares", True, attribute="node_secret_file"),
)

ACCEPTED_DOMAIN = _table(
    "accepted_domains",
    Key("domain", v.accepted_domain_name, DERIVED, "the domain, or *.domain for its subdomains (required)"),
    Key("type", _domain_type, DomainType.AUTHORITATIVE, "Authoritative, InternalRelay or ExternalRelay"),
    Key("name", v.string, DERIVED, "the domain's name in listings; default: domain"),
)

PERMISSION = _table(
    "permissions",
    Key("user", v.string, DERIVED, "the principal (NT AUTHORITY\\ANONYMOUS LOGON, ...) (required)"),
    Key("extended_rights", v.string, DERIVED, "the rights given or withheld (required)", many=True),
    Key("deny", v.boolean, False, "true: withhold the rights, whatever the groups grant"),
)

RECEIVE_CONNECTOR = _table(
    "receive_connectors",
    Key("name", _no_parser, DERIVED, "the connector's name, unique (required)"),
    Key("role", v.choice(ROLES), "frontend", '"frontend" (clients) or "hub" (other gateway nodes) (required)'),
    Key("bindings", v.parse_binding, (), 'where it listens: ["ip:port", "[::]:25"] (required)', many=True),
    Key("remote_ip_ranges", _no_parser, DERIVED, "clients it serves: IPs, CIDRs, a-b ranges or [networks] names; default: all",
        many=True),
    Key("permission_groups", _permission_group, (), "AnonymousUsers, ExchangeUsers, ExchangeServers, Partners", many=True),
    Key("auth_mechanisms", v.choice(AUTH_MECHANISMS), (), "Tls, BasicAuth, BasicAuthRequireTLS, ExternalAuthoritative, ExchangeServer",
        many=True),
    Key("banner", v.banner, "", "the text after 220; placeholders {fqdn}, {date}, {connector}, {server}"),
    Key("fqdn", v.fqdn, DERIVED, "the name it gives in its banner and EHLO reply; default: server.fqdn"),
    Key("max_message_size", v.parse_size, 36 * 1024 * 1024, "bigger messages get 552 5.3.4"),
    Key("max_recipients", v.positive_int, 200, "recipients per message"),
    Key("connection_inactivity_timeout", v.parse_duration, DERIVED, "idle time before 451 4.7.0; default: 5m frontend, 10m hub"),
    Key("enabled", v.boolean, True, "false: the connector serves nobody"),
    Key("protocol_logging_level", v.choice(LOGGING_LEVELS), "None", '"Verbose": every SMTP line in the protocol log'),
    Key("max_protocol_errors", v.positive_int, 5, "syntax and sequence errors before 421 4.7.0"),
    Key("max_hop_count", v.positive_int, 60, "more Received: fields is a mail loop (554 5.4.6)"),
    Key("tarpit_interval", v.parse_duration, 5.0, "5xx replies to unauthenticated clients wait this long"),
    Key("max_header_size", v.parse_size, 256 * 1024, "a bigger header section gets 552 5.3.4"),
    Key("max_inbound_connection", v.limit, 5000, 'connections at once, or "unlimited"'),
    Key("max_inbound_connection_per_source", v.limit, DERIVED, 'connections at once per client; default: 20 frontend, "unlimited" hub'),
    Key("message_rate_limit", v.limit, None, 'messages per minute per source; default "unlimited"'),
    Key("connection_timeout", v.parse_duration, 600.0, "the longest a session may last"),
    Key("require_tls", v.boolean, False, "Exchange's RequireTLS: MAIL before STARTTLS gets 530 5.7.0"),
    Key("implicit_tls", v.boolean, False, "TLS from the first byte (port 465, RFC 8314)"),
    Key("tls_certificate_name", v.certificate_identifier, "", "a thumbprint or <I>issuer<S>subject; default: one for fqdn"),
    Key("message_rate_source", v.choice(MESSAGE_RATE_SOURCES), "IPAddress", "whom message_rate_limit counts: IPAddress, User, All, None"),
    Key("proxy_protocol", v.boolean, False, "connections start with a PROXY v1/v2 header from trusted_proxies"),
    Key("trusted_proxies", v.ip_range, (), "the load balancers allowed to send a PROXY header", many=True),
    Key("tls_cipher_profile", v.choice(PROFILES), "modern", '"modern" or "legacy" (old devices, scoped remote_ip_ranges only)'),
    Key("tls_min_version", v.choice(tuple(VERSIONS)), DERIVED, '"1.0" to "1.3"; default: "1.2" ("1.0" with "legacy")'),
    Key("bare_linefeeds", v.choice(BARE_LINEFEEDS), "normalize", 'a bare LF or CR: "normalize" to CRLF or "reject" (554 5.6.0)'),
    *(Key(toggle, v.boolean, True, f"advertise and accept {toggle.removesuffix('_enabled').replace('_', ' ')}") for toggle in ESMTP_TOGGLES),
    subtables=("permissions",),
)

HUB_POOL = _table(
    "hub_pool",
    Key("hosts", v.host_port_parser(2525), DERIVED, "the hubs a frontend hands mail to; default: this file's first hub binding", many=True),
    Key("connect_timeout", v.parse_duration, 10.0, "connecting to a hub, and its greeting"),
    Key("idle_connections", v.positive_int, 32, "kept-open hub connections per frontend process"),
    Key("protocol_logging_level", v.choice(LOGGING_LEVELS), "Verbose", "the hand-off as an SMTP Send Protocol Log"),
    Key("reply_timeout", v.positive_duration, 30.0, "a hub that stops answering is failed over after this"),
    attribute="hub_pool", restart=True,
)

QUEUE = _table(
    "queue",
    Key("directory", v.string, "queue", "the hub's queue"),
    Key("retry_interval", v.parse_duration, 900.0, "Exchange's MessageRetryInterval"),
    Key("max_concurrent_deliveries", v.positive_int, 100, "delivery attempts in flight, all next hops together"),
    Key("transient_retry_attempts", v.count, 6, "Exchange's TransientFailureRetryAttempts"),
    Key("transient_retry_interval", v.parse_duration, 60.0, "Exchange's TransientFailureRetryInterval"),
    Key("message_expiration_timeout", v.parse_duration, 2 * 86400.0, "undelivered this long: an NDR (4.4.7)"),
    Key("delay_notification_timeout", v.duration_or_off, 4 * 3600.0, 'one delay notice after this long; "off" for none'),
    Key("max_ndrs_per_sender_domain", v.limit, 100, 'notices per sender domain and hour, or "unlimited"'),
    Key("max_deliveries_per_next_hop", v.positive_int, 20, "attempts in flight to one next hop"),
    Key("greeting_timeout", v.positive_duration, 300.0, "the delivery client's wait for the 220 banner"),
    Key("helo_timeout", v.positive_duration, 300.0, "... for EHLO/HELO, STARTTLS, AUTH"),
    Key("mail_timeout", v.positive_duration, 300.0, "... for MAIL"),
    Key("rcpt_timeout", v.positive_duration, 300.0, "... for each RCPT"),
    Key("data_init_timeout", v.positive_duration, 120.0, "... for the 354 to DATA"),
    Key("data_done_timeout", v.positive_duration, 600.0, "... for the reply to the end of the message"),
    Key("data_transfer_timeout", v.positive_duration, 180.0, "... for a next hop that stops reading the body"),
    attribute="queue", restart=True,
)

# TLS and AUTH to a next hop: the same keys, read by one reader
# (gateway/config/hop.py), on a send connector and the mailbox next hop.
HOP_SECURITY = (
    Key("auth_user", v.string, "", "the account to AUTH as"),
    Key("auth_password", v.string, "", "its password"),
    Key("tls_ca_file", v.string, "", "trust roots for tls = \"required\"; default: the system's"),
    Key("tls", v.choice(OUTBOUND_TLS), "opportunistic", '"opportunistic", "required" (certificate checked) or "none"'),
    Key("tls_domain", v.fqdn, "", "the name the next hop's certificate must carry"),
    Key("smart_host_auth", v.choice(BASIC_AUTH), DERIVED, '"BasicAuth" or "BasicAuthRequireTLS"; default: the latter with auth_user'),
)

MAILBOX = _table(
    "mailbox",
    Key("delivery", v.choice(("maildir", "smtp")), "maildir", '"maildir" (local store) or "smtp" (to next_hop)'),
    Key("next_hop", v.parse_host_port, None, 'host:port of the mail store, for delivery = "smtp"'),
    Key("maildir", v.string, "mailboxes", "the local Maildir store"),
    Key("protocol_logging_level", v.choice(LOGGING_LEVELS), "None", "the next hop's sessions in the SMTP Send Protocol Log"),
    Key("max_mailboxes", v.limit, 10_000, 'Maildirs the store may make, or "unlimited"'),
    *HOP_SECURITY[:2],
    Key("auth_password_file", v.string, "", "a file whose first line is auth_password (relative to var_dir)"),
    *HOP_SECURITY[2:],
    attribute="mailbox", restart=True,
)

SEND_CONNECTOR = _table(
    "send_connectors",
    Key("name", v.string, "", "the connector's name, unique (required)"),
    Key("port", v.parse_port, 25, "for smart hosts without :port, and for MX"),
    Key("address_spaces", v.address_space, (), '"*", "ext.example" or "*.ext.example" (required)', many=True),
    Key("smart_hosts", v.host_port_parser(25), (), "host[:port] tried in order; none: DNS MX routing", many=True),
    *HOP_SECURITY[:5],
    Key("smart_host_auth", v.choice((*BASIC_AUTH, *OAUTH_MECHANISMS)), DERIVED,
        'BasicAuth, BasicAuthRequireTLS (default with auth_user), XOAUTH2 or OAUTHBEARER'),
    Key("cost", v.positive_int, 1, "among connectors with the same address space, the lowest wins"),
    Key("enabled", v.boolean, True, "false: the connector routes nothing"),
    Key("fqdn", v.fqdn, DERIVED, "the EHLO name; default: server.fqdn"),
    Key("connection_timeout", v.parse_duration, 30.0, "connecting to a next hop"),
    Key("tls_client_certificate_name", v.certificate_identifier, "", "the certificate shown to a next hop that asks for one"),
    Key("oauth_token_url", v.https_url, "", "the token endpoint (XOAUTH2/OAUTHBEARER)"),
    Key("oauth_client_id", v.string, "", "the app registration's client id"),
    Key("oauth_scope", v.string, "", "the scope asked for"),
    Key("oauth_client_secret_file", v.string, "", "a file holding the client secret (relative to the config file)"),
    Key("oauth_client_certificate_name", v.certificate_identifier, "", "a certificate from the store as the credential"),
    Key("oauth_service_account_file", v.string, "", "a Google service account's JSON key (relative to the config file)"),
    Key("oauth_ca_file", v.string, "", "trust for the token endpoint; default: the system's"),
    Key("source_senders", v.sender, (), "only mail from these senders takes this route", many=True),
    Key("source_receive_connectors", v.string, (), "only mail received on these connectors", many=True),
    Key("source_users", v.string, (), "only mail submitted by these users", many=True),
    Key("max_message_size", v.parse_size, None, "bigger messages fail with an NDR; default: no limit"),
    Key("max_connections", v.positive_int, 20, "Exchange's MaxPerDomainOutboundConnections"),
    Key("max_messages_per_connection", v.positive_int, 20, "Exchange's SmtpMaxMessagesPerConnection"),
    Key("protocol_logging_level", v.choice(LOGGING_LEVELS), "None", '"Verbose": the SMTP Send Protocol Log'),
)

DNS = _table(
    "dns",
    Key("servers", v.host_port_parser(53), (), "DNS servers by IP address; default: /etc/resolv.conf", many=True),
    Key("timeout", v.parse_duration, 10.0, "the wait for a DNS answer"),
    attribute="dns", restart=True,
)

CERTIFICATES = _table(
    "certificates",
    Key("directory", v.string, "certs", "the certificate store", True, attribute="certificate_dir"),
)

LDAP = _table(
    "authentication.ldap",
    Key("ca_file", v.string, None, "trust roots for ldaps:// or start_tls (relative to the config file); default: the system's"),
    Key("url", v.ldap_url, "ldap://localhost", "ldap://host[:port] or ldaps://host[:port] (required)"),
    Key("base_dn", v.string, "", "where users are searched for (required)"),
    Key("bind_dn", v.string, "", "the account that searches; leave out with bind_password to search anonymously"),
    Key("bind_password", v.string, "", "its password"),
    Key("start_tls", v.boolean, False, "STARTTLS on an ldap:// URL"),
    Key("login_attributes", v.ldap_attribute, ("sAMAccountName", "userPrincipalName", "uid", "mail"),
        "the attributes a login name is looked up in", many=True),
    Key("sender_attributes", v.ldap_attribute, ("mail", "proxyAddresses"), "the attributes that hold a user's sender addresses", many=True),
    Key("timeout", v.parse_duration, 5.0, "then 454 4.7.0, never 535"),
)

AUTHENTICATION = _table(
    "authentication",
    Key("backends", v.choice(AUTH_BACKENDS), ("users_file",), 'credential backends in order: "users_file", "ldap"', many=True),
    Key("users_file", v.string, "users.toml", "local accounts with argon2id hashes"),
    Key("failure_tarpit", v.parse_duration, 2.0, "each AUTH failure is answered after this"),
    Key("max_failures_per_connection", v.positive_int, 3, "then 421 4.7.0"),
    Key("max_failures_per_source", v.positive_int, 10, "in failure_window, then AUTH refused for lockout"),
    Key("max_failures_per_user", v.positive_int, 20, "in failure_window, then AUTH refused for lockout"),
    Key("failure_window", v.parse_duration, 900.0, "how long failures count"),
    Key("lockout", v.parse_duration, 900.0, "how long a source or user is refused AUTH"),
    Key("check_header_from", v.boolean, False, "check From: against the user's send-as addresses too"),
    Key("credential_cache_ttl", v.parse_duration, 3600.0, 'how long a verified password is remembered; "0s": never'),
    Key("header_from", v.choice(("refuse", "authenticated_user")), "refuse",
        'a From: the user may not send as: "refuse" (550 5.7.60) or "authenticated_user"'),
    subtables=("ldap",),
)

RECIPIENT_VALIDATION = _table(
    "recipient_validation",
    Key("sources", v.choice(RECIPIENT_SOURCES), DERIVED, 'users_file, ldap, list, callout; default: ["ldap"] with [authentication.ldap]',
        many=True),
    Key("list_file", v.string, "recipients.txt", 'the "list" source: one address or *@domain per line'),
    Key("cache_ttl", v.parse_duration, 300.0, "how long directory answers are kept"),
)

PROTOCOL_LOG = _table(
    "protocol_log",
    Key("directory", v.string, "logs/ProtocolLog", "the SMTP protocol logs"),
    Key("max_file_size", v.parse_size, 10 * 1024 * 1024, "then a new file"),
    Key("max_age", v.parse_duration, 30 * 86400.0, "older files are deleted"),
    Key("max_directory_size", v.parse_size, 250 * 1024 * 1024, "past it the oldest files are deleted"),
    attribute="protocol_log", restart=True,
)

MESSAGE_TRACKING = _table(
    "message_tracking",
    Key("enabled", v.boolean, True, "write the message tracking log"),
    Key("directory", v.string, "logs/MessageTracking", "the message tracking log"),
    Key("max_file_size", v.parse_size, 10 * 1024 * 1024, "then a new file"),
    Key("max_age", v.parse_duration, 30 * 86400.0, "older files are deleted"),
    Key("max_directory_size", v.parse_size, 1000 * 1024 * 1024, "past it the oldest files are deleted"),
    attribute="message_tracking", restart=True,
)

LIMITS = _table(
    "limits",
    Key("ipv6_source_prefix", v.ipv6_prefix, 64, "IPv6 clients are counted per network of this many bits"),
    Key("junk_command_limit", v.positive_int, 100, "NOOP, RSET, VRFY, HELP and unknown commands between messages"),
    attribute="limits", restart=True,
)

ADMIN = _table(
    "admin",
    Key("socket", v.string, "run/admin.sock", "the admin API's UNIX socket", True, attribute="admin_socket"),
)

HEALTH = _table(
    "health",
    Key("listen", v.parse_binding, None, "ip:port of the HTTP health and metrics listener; none if left out", True,
        attribute="health_listen"),
    Key("frontend_listen", v.parse_binding, None, "the same for a --role frontend process on a hub's machine", True,
        attribute="health_frontend_listen"),
    Key("min_free_space", v.parse_size, 100 * 1024 * 1024, "below it in the queue's file system MAIL gets 452 4.3.1", True,
        attribute="min_free_space"),
    Key("max_memory_percent", v.memory_percent, 94.0, "above this share of memory in use MAIL gets 452 4.3.1", True,
        attribute="max_memory_percent"),
)

# Every table read by gateway/config, in the order the file is read.
TABLES = (SERVER, ACCEPTED_DOMAIN, RECEIVE_CONNECTOR, PERMISSION, HUB_POOL, QUEUE, MAILBOX, SEND_CONNECTOR, DNS, CERTIFICATES,
          AUTHENTICATION, LDAP, RECIPIENT_VALIDATION, PROTOCOL_LOG, MESSAGE_TRACKING, LIMITS, ADMIN, HEALTH)

# The sections a file may have: the tables above that stand at the top, and
# those read by the modules that own them ([networks]: gateway/networks.py,
# [[rewrite]]: gateway/rewrite.py, [dkim]: gateway/sign/dkim.py,
# [[journal_rules]]: gateway/journal.py).
TOP_KEYS = frozenset(t.name for t in TABLES if t is not PERMISSION and "." not in t.name) | {"networks", "rewrite", "dkim", "journal_rules"}


def restart_only() -> tuple[str, ...]:
    """The Config attributes a reload does not apply (reported as waiting for a restart), in schema order."""
    out: list[str] = []
    for table in TABLES:
        for key in table.keys:
            name = table.attribute or key.attribute
            if key.restart and name not in out:
                out.append(name)
    return tuple(out)
