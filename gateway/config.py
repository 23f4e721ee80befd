"""
The configuration file: TOML in, frozen and validated objects out.

Every problem in a file is collected and reported at once, each naming the
file, the key and the reason, so an admin fixes a broken file in one pass
instead of one restart per typo. Unknown sections and keys are errors: a
misspelt setting that is silently ignored is how open relays happen.

Relative paths: `server.var_dir` and CA files are relative to the config
file's directory (the packaged sample's to the current directory: see
gateway/configpath.py), so every process reading one file uses the same
directories; queue, mailbox, log and certificate directories are relative
to `var_dir`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gateway.connectors import ALL_IPV4, ALL_IPV6, IPRange, parse_range, range_conflicts
from gateway.domains import AcceptedDomain, AcceptedDomains, DomainType
from gateway.networks import DEFAULT_NETWORKS, parse_networks, resolve_ranges
from gateway.policy.rights import PermissionGroup, parse_principal, parse_right
from gateway.address import valid_domain
from gateway.tls.profiles import PROFILES, SAFE_MIN_VERSION, VERSIONS, TLSProfile, default_min_version
from gateway.configpath import base_directory, packaged_sample
from gateway.rewrite import read_rules as read_rewrite_rules
from gateway.sign.dkim import DKIMConfig, read_config as read_dkim_config
from gateway.journal import read_rules as read_journal_rules, routable as journal_routable

ROLES = ("frontend", "hub")
# Exchange's AuthMechanism values that exgateway implements. Tls: STARTTLS is
# offered; BasicAuth: AUTH PLAIN/LOGIN; BasicAuthRequireTLS: AUTH only after TLS.
# ExchangeServer: other gateway nodes authenticate with the node secret (gateway/auth/node.py).
AUTH_MECHANISMS = ("None", "Tls", "BasicAuth", "BasicAuthRequireTLS", "ExternalAuthoritative", "ExchangeServer")
MESSAGE_RATE_SOURCES = ("None", "IPAddress", "User", "All")
AUTH_BACKENDS = ("users_file", "ldap")


def default_config_path() -> Path:
    """The annotated sample inside the package (which file a process uses: gateway/configpath.py)."""
    return packaged_sample()


@dataclass(frozen=True)
class Binding:
    host: str
    port: int

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.ipv6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ReceiveConnector:
    name: str
    server_name: str
    role: str
    bindings: tuple[Binding, ...]
    remote_ip_ranges: tuple[IPRange, ...]
    permission_groups: frozenset[PermissionGroup]
    auth_mechanisms: frozenset[str]
    banner: str
    fqdn: str
    max_message_size: int
    max_recipients: int
    connection_inactivity_timeout: float
    enabled: bool
    protocol_logging_level: str = "None"
    tarpit_interval: float = 5.0
    max_header_size: int = 256 * 1024
    max_protocol_errors: int = 5
    # Exchange's MaxHopCount: more Received: fields than this is a mail loop (554 5.4.6).
    max_hop_count: int = 60
    # None is Exchange's "unlimited".
    max_inbound_connection: int | None = 5000
    max_inbound_connection_per_source: int | None = 20
    message_rate_limit: int | None = None
    connection_timeout: float = 600.0
    pipelining_enabled: bool = True
    eight_bit_mime_enabled: bool = True
    size_enabled: bool = True
    enhanced_status_codes_enabled: bool = True
    chunking_enabled: bool = True
    # Extended rights given to, or withheld from, a principal on this connector
    # (Exchange's Add-ADPermission / Remove-ADPermission on a receive connector).
    granted: frozenset = frozenset()
    withheld: frozenset = frozenset()
    # TLS: STARTTLS is offered with the "Tls" mechanism; implicit_tls (port 465,
    # RFC 8314) starts TLS before the banner. require_tls is Exchange's RequireTLS.
    require_tls: bool = False
    implicit_tls: bool = False
    # A thumbprint or "<I>issuer<S>subject"; empty: the certificate matching fqdn.
    tls_certificate_name: str = ""
    # Exchange's MessageRateSource: whom message_rate_limit counts.
    message_rate_source: str = "IPAddress"
    # HAProxy's PROXY protocol (v1/v2), accepted only from these balancers.
    proxy_protocol: bool = False
    trusted_proxies: tuple[IPRange, ...] = ()
    # TLS profile (gateway/tls/profiles.py); weakened only on a connector with scoped remote ranges.
    tls_cipher_profile: str = "modern"
    tls_min_version: str = "1.2"
    # Bare CR or LF inside a message: turned into CRLF, or the message refused (gateway/smtpd/data.py).
    bare_linefeeds: str = "normalize"

    @property
    def identity(self) -> str:
        return f"{self.server_name}\\{self.name}"

    @property
    def offers_starttls(self) -> bool:
        return "Tls" in self.auth_mechanisms and not self.implicit_tls

    @property
    def uses_tls(self) -> bool:
        return self.implicit_tls or "Tls" in self.auth_mechanisms

    @property
    def basic_auth(self) -> bool:
        return bool({"BasicAuth", "BasicAuthRequireTLS"} & self.auth_mechanisms)


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int
    # For an address found by DNS: the name it was found under (TLS checks the certificate against it).
    name: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HubPool:
    hosts: tuple[HostPort, ...]
    connect_timeout: float
    idle_connections: int
    protocol_logging_level: str = "Verbose"
    # The longest wait for any reply of a hub (greeting: connect_timeout): a hub
    # that stops answering (frozen, SIGSTOP) is failed over after this long.
    reply_timeout: float = 30.0


@dataclass(frozen=True)
class QueueConfig:
    directory: Path
    retry_interval: float
    max_concurrent_deliveries: int
    # Exchange's TransientFailureRetryAttempts / -Interval, MessageExpirationTimeout,
    # DelayNotificationTimeout (None: no delay notices).
    transient_retry_attempts: int = 6
    transient_retry_interval: float = 60.0
    message_expiration_timeout: float = 2 * 86400.0
    delay_notification_timeout: float | None = 4 * 3600.0
    # Notices (NDRs, delay notices) per sender domain and hour; None: unlimited (queue/noticelimit.py).
    max_ndrs_per_sender_domain: int | None = 100
    # Attempts in flight to one next hop (a send connector's max_connections may lower it).
    max_deliveries_per_next_hop: int = 20
    # The delivery client's wait for each reply, by phase (gateway/deliver/timeouts.py), as Postfix's smtp_*_timeout.
    greeting_timeout: float = 300.0
    helo_timeout: float = 300.0
    mail_timeout: float = 300.0
    rcpt_timeout: float = 300.0
    data_init_timeout: float = 120.0
    data_done_timeout: float = 600.0
    data_transfer_timeout: float = 180.0

    def delivery_timeouts(self):
        from gateway.deliver.timeouts import PhaseTimeouts

        return PhaseTimeouts(
            greeting=self.greeting_timeout, helo=self.helo_timeout, mail=self.mail_timeout, rcpt=self.rcpt_timeout,
            data_init=self.data_init_timeout, data_done=self.data_done_timeout, data_xfer=self.data_transfer_timeout,
        )

    def retry_policy(self):
        from gateway.queue.retry import RetryPolicy

        return RetryPolicy(
            self.retry_interval, self.transient_retry_attempts, self.transient_retry_interval,
            self.message_expiration_timeout, self.delay_notification_timeout,
        )


@dataclass(frozen=True)
class MailboxConfig:
    delivery: str
    maildir: Path
    next_hop: HostPort | None
    # The next hop's SMTP Send Protocol Log (Hub/SmtpSend): "None" or "Verbose".
    protocol_logging_level: str = "None"
    # Mailboxes the Maildir delivery may create (a new local part past it is deferred); None: no cap.
    max_mailboxes: int | None = 10_000
    # For delivery = "smtp": TLS and AUTH to the mail store, as on a send connector.
    tls: str = "opportunistic"
    tls_domain: str = ""
    tls_ca_file: Path | None = None
    smart_host_auth: str = "None"
    auth_user: str = ""
    auth_password: str = field(default="", repr=False)

    def security(self):
        from gateway.deliver.security import OutboundSecurity

        return OutboundSecurity(self.tls, self.tls_domain, self.tls_ca_file, self.smart_host_auth, self.auth_user, self.auth_password)


@dataclass(frozen=True)
class SendConnector:
    """
    An outbound route: the address spaces it serves, and either smart hosts
    (tried in order) or, with none, DNS MX routing (Exchange's DNSRoutingEnabled).
    """

    name: str
    address_spaces: tuple[str, ...]
    smart_hosts: tuple[HostPort, ...]
    cost: int = 1
    enabled: bool = True
    port: int = 25
    fqdn: str = ""
    connection_timeout: float = 30.0
    # "none", "opportunistic" (Exchange's default) or "required" (certificate checked).
    tls: str = "opportunistic"
    tls_domain: str = ""
    tls_ca_file: Path | None = None
    # Exchange's TlsCertificateName on a send connector: the certificate (a thumbprint or
    # <I>issuer<S>subject, from the store) presented to a next hop that asks for one.
    tls_client_certificate_name: str = ""
    # Exchange's SmartHostAuthMechanism: None, BasicAuth, BasicAuthRequireTLS; or XOAUTH2 / OAUTHBEARER
    # with a token from oauth_token_url (gateway/deliver/oauth.py). auth_user: the mailbox to log in as.
    smart_host_auth: str = "None"
    auth_user: str = ""
    auth_password: str = field(default="", repr=False)
    oauth_token_url: str = ""
    oauth_client_id: str = ""
    oauth_scope: str = ""
    # The credential, one of: a file holding the client secret, a certificate from the store
    # (Microsoft's certificate credential), a Google service account's JSON key.
    oauth_client_secret_file: Path | None = None
    oauth_client_certificate_name: str = ""
    oauth_service_account_file: Path | None = None
    # Trust for the token endpoint's certificate; None: the system's trust store.
    oauth_ca_file: Path | None = None
    # Sender-dependent routing (gateway/route/source.py): empty serves every source.
    source_senders: tuple[str, ...] = ()
    source_receive_connectors: tuple[str, ...] = ()
    source_users: tuple[str, ...] = ()
    max_message_size: int | None = None
    # Exchange's MaxPerDomainOutboundConnections and SmtpMaxMessagesPerConnection.
    max_connections: int = 20
    max_messages_per_connection: int = 20
    # Exchange's ProtocolLoggingLevel: "Verbose" writes the SMTP Send Protocol Log (Hub/SmtpSend).
    protocol_logging_level: str = "None"

    @property
    def dns_routing(self) -> bool:
        return not self.smart_hosts

    def security(self):
        from gateway.deliver.security import OutboundSecurity

        return OutboundSecurity(self.tls, self.tls_domain, self.tls_ca_file, self.smart_host_auth, self.auth_user, self.auth_password)


@dataclass(frozen=True)
class DNSConfig:
    """Which DNS servers the hub asks for MX/A/AAAA; empty: the system's (/etc/resolv.conf)."""

    servers: tuple[HostPort, ...] = ()
    timeout: float = 10.0


@dataclass(frozen=True)
class LDAPConfig:
    """An LDAP / Active Directory credential backend: find the user's DN, then bind as it."""

    url: str
    base_dn: str
    bind_dn: str = ""
    bind_password: str = ""
    start_tls: bool = False
    ca_file: Path | None = None
    login_attributes: tuple[str, ...] = ("sAMAccountName", "userPrincipalName", "uid", "mail")
    sender_attributes: tuple[str, ...] = ("mail", "proxyAddresses")
    timeout: float = 5.0

    @property
    def host_port(self) -> tuple[str, int, bool]:
        """(host, port, ldaps) from the URL."""
        scheme, _, rest = self.url.partition("://")
        host, port = _split_host_port(rest.rstrip("/")) if ":" in rest.rstrip("/") else (rest.rstrip("/"), "")
        ldaps = scheme.lower() == "ldaps"
        return host, int(port) if port else (636 if ldaps else 389), ldaps


@dataclass(frozen=True)
class AuthConfig:
    """How AUTH is checked, and the brute-force defence around it."""

    backends: tuple[str, ...] = ("users_file",)
    users_file: Path = Path("users.toml")
    ldap: LDAPConfig | None = None
    failure_tarpit: float = 2.0
    max_failures_per_connection: int = 3
    max_failures_per_source: int = 10
    max_failures_per_user: int = 20
    failure_window: float = 900.0
    lockout: float = 900.0
    check_header_from: bool = False
    # How long a verified password is remembered (gateway/auth/credcache.py); 0: verify every login.
    credential_cache_ttl: float = 3600.0
    # What check_header_from does with a From: the user may not send as: refuse (550 5.7.60),
    # or "authenticated_user": replace it with the user's address (gateway/policy/headerfrom.py).
    header_from: str = "refuse"


@dataclass(frozen=True)
class RecipientValidationConfig:
    """[recipient_validation]: who is a recipient of the authoritative domains (gateway/policy/recipients.py)."""

    # Empty: off. Default: ("ldap",) when [authentication.ldap] exists (a directory knows the organisation's recipients).
    sources: tuple[str, ...] = ()
    list_file: Path = Path("var/recipients.txt")
    cache_ttl: float = 300.0


@dataclass(frozen=True)
class ProtocolLogConfig:
    directory: Path
    max_file_size: int
    max_age: float
    # Exchange's MaxDirectorySize: past it the oldest files go.
    max_directory_size: int = 250 * 1024 * 1024


@dataclass(frozen=True)
class MessageTrackingConfig:
    """Exchange's MessageTrackingLogEnabled, -Path, -MaxFileSize, -MaxAge."""

    enabled: bool = True
    directory: Path = Path("var/logs/MessageTracking")
    max_file_size: int = 10 * 1024 * 1024
    max_age: float = 30 * 86400.0
    max_directory_size: int = 1000 * 1024 * 1024


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: bounds on what clients can make the gateway count and keep (restart to change)."""

    # IPv6 clients are counted per network of this prefix for the per-source
    # connection and message-rate limits: one host holds a whole /64.
    ipv6_source_prefix: int = 64
    # NOOP, RSET, VRFY, HELP and unknown commands a session may send between
    # accepted messages (Postfix's smtpd_junk_command_limit), then 421 4.7.0.
    junk_command_limit: int = 100


@dataclass(frozen=True)
class Config:
    path: Path
    server_name: str
    fqdn: str
    var_dir: Path
    accepted_domains: tuple[AcceptedDomain, ...]
    receive_connectors: tuple[ReceiveConnector, ...]
    hub_pool: HubPool
    queue: QueueConfig
    mailbox: MailboxConfig
    protocol_log: ProtocolLogConfig
    send_connectors: tuple[SendConnector, ...] = ()
    certificate_dir: Path = Path("var/certs")
    auth: AuthConfig = AuthConfig()
    dns: DNSConfig = DNSConfig()
    message_tracking: MessageTrackingConfig = MessageTrackingConfig()
    recipient_validation: RecipientValidationConfig = RecipientValidationConfig()
    # The admin API's UNIX socket (queue commands).
    admin_socket: Path = Path("var/run/admin.sock")
    # The HTTP health (and metrics) listener; None: none. A `--role frontend`
    # process uses health_frontend_listen if set (a hub and a frontend on one machine).
    health_listen: Binding | None = None
    health_frontend_listen: Binding | None = None
    min_free_space: int = 100 * 1024 * 1024
    # Back pressure on memory: MAIL refused above this share of physical memory in use (Exchange's PercentagePhysicalMemoryUsedLimit).
    max_memory_percent: float = 94.0
    # Processes serving this node (gateway/workers.py); 1: the twistd process alone.
    workers: int = 1
    limits: LimitsConfig = LimitsConfig()
    # At a stop, how long a message in DATA/BDAT may take to finish (gateway/smtpd/shutdown.py).
    shutdown_grace: float = 30.0
    # The secret every gateway node shares (gateway/auth/node.py): made at first start, copied to the others.
    node_secret_file: Path = Path("var/node.secret")
    # [[rewrite]]: address rewriting at the hub's intake (gateway/rewrite.py).
    rewrite: tuple = ()
    # [dkim]: signing at the hub's intake (gateway/sign/dkim.py).
    dkim: DKIMConfig = DKIMConfig()
    # [[journal_rules]]: journal copies made at the hub's intake (gateway/journal.py).
    journal_rules: tuple = ()

    def connectors(self, role: str) -> tuple[ReceiveConnector, ...]:
        return tuple(c for c in self.receive_connectors if c.role == role)


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}"


class ConfigError(Exception):
    """A config file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --- value parsers: each returns the value or raises ValueError(reason) ---

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")
_SIZE = re.compile(r"^(\d+)\s*(B|KB|MB|GB)?$", re.I)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_duration(value: Any) -> float:
    """`30s`, `5m`, `2d`, or Exchange's timespan `00:05:00` / `2.00:00:00`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
        m = _TIMESPAN.match(value.strip())
        if m:
            days, h, mins, s = (int(g or 0) for g in m.groups())
            if h < 24 and mins < 60 and s < 60:
                return float(days * 86400 + h * 3600 + mins * 60 + s)
    raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '5m', '2d' or '00:05:00')")


def parse_size(value: Any) -> int:
    """Bytes, or `36MB` / `512KB` (binary units, as Exchange counts them)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value.strip())
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper() if m.group(2) else None]
    raise ValueError(f"{value!r} is not a size (use bytes or e.g. '36MB')")


def parse_port(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    if isinstance(value, str) and value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    raise ValueError(f"{value!r} is not a valid port (1-65535)")


def _split_host_port(text: str) -> tuple[str, str]:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [ipv6]:port")
        return host, port
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        raise ValueError(f"{text!r} is not host:port (write IPv6 as [addr]:port)")
    return host, port


def parse_binding(value: Any) -> Binding:
    """`0.0.0.0:25`, `127.0.0.1:2525`, `[::]:25`."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an 'ip:port' string")
    host, port = _split_host_port(value)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    try:
        return Binding(host, parse_port(port))
    except ValueError as e:
        raise ValueError(f"{value!r}: {e}") from None


def parse_host_port(value: Any, default_port: int = 25) -> HostPort:
    """`host`, `host:port`, `10.0.0.1:2525` or `[2001:db8::1]:2525`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a host or host:port string")
    if value.startswith("[") or value.count(":") == 1:
        host, port = _split_host_port(value)
        port_n = parse_port(port)
    else:
        host, port_n = value, default_port
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not valid_domain(host):
            raise ValueError(f"{value!r}: {host!r} is not a host name or IP address") from None
    return HostPort(host, port_n)


# --- the reader: walks the TOML tree, records problems, rejects unknown keys ---


class _Reader:
    def __init__(self, file: str, base: Path | None = None) -> None:
        self.file = file
        self.base = base
        self.problems: list[ConfigProblem] = []

    def relative(self, text: str) -> Path:
        """A path from the file: a relative one is under the file's base directory (see load_config)."""
        return self.base / text if self.base is not None else Path(text)

    def problem(self, key: str, reason: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, reason))

    def table(self, data: dict, key: str, allowed: set[str]) -> dict:
        for k in data:
            if k not in allowed:
                self.problem(f"{key}.{k}" if key else k, f"unknown key (known: {', '.join(sorted(allowed))})")
        return data

    def get(self, data: dict, where: str, key: str, parse: Callable[[Any], Any], default: Any) -> Any:
        if key not in data:
            return default
        try:
            return parse(data[key])
        except ValueError as e:
            self.problem(f"{where}.{key}" if where else key, str(e))
            return default

    def items(self, data: dict, where: str, key: str, parse: Callable[[Any], Any], default: tuple) -> tuple:
        if key not in data:
            return default
        value = data[key]
        if not isinstance(value, list):
            self.problem(f"{where}.{key}", f"{value!r} is not a list")
            return default
        out = []
        for i, item in enumerate(value):
            try:
                out.append(parse(item))
            except ValueError as e:
                self.problem(f"{where}.{key}[{i}]", str(e))
        return tuple(out)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


def _memory_percent(value: Any) -> float:
    """`[health] max_memory_percent`: above 0, at most 100 (100: memory never refuses mail)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 100:
        raise ValueError(f"{value!r} is not a percentage above 0 and at most 100")
    return float(value)


def _ipv6_prefix(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 128:
        raise ValueError(f"{value!r} is not a prefix length (1-128)")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a whole number (0 or more)")
    return value


def _workers(value: Any) -> int:
    """`server.workers`: a count, or "auto" for one per CPU this process may run on."""
    if value == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WORKERS:
        raise ValueError(f'{value!r} is not "auto" or a whole number from 1 to {MAX_WORKERS}')
    return value


def _positive_duration(value: Any) -> float:
    """A duration above zero (a timeout of 0 would fail every wait at once)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a duration above zero")
    return seconds


def _duration_or_off(value: Any) -> float | None:
    if isinstance(value, str) and value.lower() == "off":
        return None
    return parse_duration(value)


def _limit(value: Any) -> int | None:
    """A positive count, or "unlimited" (Exchange's word)."""
    if isinstance(value, str) and value.lower() == "unlimited":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer or \"unlimited\"")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        for option in options:
            if isinstance(value, str) and value.lower() == option.lower():
                return option
        raise ValueError(f"{value!r} is not one of {', '.join(options)}")

    return parse


def _ip_range(value: Any) -> IPRange:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP range string")
    try:
        return parse_range(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IP address, CIDR block or a-b range ({e})") from None


def _fqdn(value: Any) -> str:
    if not isinstance(value, str) or not valid_domain(value):
        raise ValueError(f"{value!r} is not a valid host name")
    return value


def _banner(value: Any) -> str:
    value = _string(value)
    if "\r" in value or "\n" in value:
        raise ValueError("a banner is one line")
    try:
        value.format(fqdn="", date="", connector="", server="")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"bad placeholder {e} (known: {{fqdn}}, {{date}}, {{connector}}, {{server}})") from None
    return value


def _certificate_identifier(value: Any) -> str:
    from gateway.tls.certname import parse_certificate_identifier

    value = _string(value)
    parse_certificate_identifier(value)  # CertificateIdentifierError is a ValueError naming what is wrong
    return value


def _sender_pattern(value: Any) -> str:
    from gateway.route.source import sender_pattern

    return sender_pattern(_string(value))


def _https_url(value: Any) -> str:
    value = _string(value)
    scheme, sep, rest = value.partition("://")
    if scheme.lower() != "https" or not sep or not rest.split("/")[0]:
        raise ValueError(f"{value!r} is not an https:// URL (a token is never fetched in clear)")
    return value


def _check_oauth(reader: "_Reader", where: str, connector: "SendConnector", data: dict) -> None:
    """XOAUTH2 / OAUTHBEARER: a mailbox, TLS, and exactly one credential with what its grant needs."""
    oauth_keys = sorted(k for k in data if k.startswith("oauth_"))
    if connector.smart_host_auth not in OAUTH_MECHANISMS:
        if oauth_keys:
            reader.problem(f"{where}.{oauth_keys[0]}", 'oauth_* settings need smart_host_auth = "XOAUTH2" or "OAUTHBEARER"')
        return
    if not connector.auth_user:
        reader.problem(f"{where}.auth_user", "XOAUTH2 and OAUTHBEARER log in as a mailbox: auth_user = \"relay@corp.example\"")
    if connector.auth_password:
        reader.problem(f"{where}.auth_password", "not used with OAuth: the credential is oauth_client_secret_file, "
                       "oauth_client_certificate_name or oauth_service_account_file")
    if connector.tls == "none":
        reader.problem(f"{where}.tls", "a bearer token is never sent in clear: tls = \"opportunistic\" or \"required\"")
    credentials = [k for k in ("oauth_client_secret_file", "oauth_client_certificate_name", "oauth_service_account_file") if k in data]
    if len(credentials) != 1:
        reader.problem(f"{where}.smart_host_auth", f"{connector.smart_host_auth} needs exactly one of oauth_client_secret_file, "
                       "oauth_client_certificate_name (Microsoft 365) or oauth_service_account_file (Google)"
                       + (f"; given: {', '.join(credentials)}" if credentials else ""))
    if "oauth_service_account_file" in credentials:
        return  # The token URL and client come from the key file; the scope defaults to Gmail's.
    for key in ("oauth_token_url", "oauth_client_id", "oauth_scope"):
        if key not in data:
            reader.problem(f"{where}.{key}", "required with oauth_client_secret_file or oauth_client_certificate_name")


def _ldap_url(value: Any) -> str:
    value = _string(value)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/"):
        raise ValueError(f"{value!r} is not an ldap://host[:port] or ldaps://host[:port] URL")
    host = rest.strip("/")
    try:
        parse_host_port(host, 389)
    except ValueError as e:
        raise ValueError(f"{value!r}: {e}") from None
    return value


def _address_space(value: Any) -> str:
    """`*`, `ext.example` or `*.partner.example`."""
    value = _string(value).lower()
    if value == "*":
        return value
    bare = value[2:] if value.startswith("*.") else value
    if not valid_domain(bare):
        raise ValueError(f"{value!r} is not *, a domain or a *.domain address space")
    return value


def _accepted_domain_name(value: Any) -> str:
    value = _string(value).lower()
    bare = value[2:] if value.startswith("*.") else value
    if not valid_domain(bare):
        raise ValueError(f"{value!r} is not a domain or *.domain wildcard")
    return value


TOP_KEYS = {
    "server", "accepted_domains", "receive_connectors", "hub_pool", "queue", "mailbox", "protocol_log", "send_connectors",
    "certificates", "authentication", "dns", "message_tracking", "admin", "health", "limits", "networks", "recipient_validation",
    "rewrite", "dkim", "journal_rules",
}
LIMITS_KEYS = {"ipv6_source_prefix", "junk_command_limit"}
RECIPIENT_VALIDATION_KEYS = {"sources", "list_file", "cache_ttl"}
ADMIN_KEYS = {"socket"}
HEALTH_KEYS = {"listen", "frontend_listen", "min_free_space", "max_memory_percent"}
TRACKING_KEYS = {"enabled", "directory", "max_file_size", "max_age", "max_directory_size"}
DNS_KEYS = {"servers", "timeout"}
CERTIFICATE_KEYS = {"directory"}
AUTH_KEYS = {
    "backends", "users_file", "ldap", "failure_tarpit", "max_failures_per_connection", "max_failures_per_source",
    "max_failures_per_user", "failure_window", "lockout", "check_header_from", "credential_cache_ttl",
    "header_from",
}
LDAP_KEYS = {"url", "base_dn", "bind_dn", "bind_password", "start_tls", "ca_file", "login_attributes", "sender_attributes", "timeout"}
SEND_CONNECTOR_KEYS = {
    "name", "address_spaces", "smart_hosts", "port", "cost", "enabled", "fqdn", "connection_timeout", "tls", "tls_domain",
    "tls_ca_file", "smart_host_auth", "auth_user", "auth_password", "max_message_size", "max_connections",
    "max_messages_per_connection", "protocol_logging_level", "tls_client_certificate_name",
    "oauth_token_url", "oauth_client_id", "oauth_scope", "oauth_client_secret_file", "oauth_client_certificate_name",
    "oauth_service_account_file", "oauth_ca_file", "source_senders", "source_receive_connectors", "source_users",
}
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
PROTOCOL_LOG_KEYS = {"directory", "max_file_size", "max_age", "max_directory_size"}
SERVER_KEYS = {"name", "fqdn", "var_dir", "workers", "shutdown_grace", "node_secret_file"}
MAX_WORKERS = 64
DOMAIN_KEYS = {"name", "domain", "type"}
CONNECTOR_KEYS = {
    "name", "role", "bindings", "remote_ip_ranges", "permission_groups", "auth_mechanisms",
    "banner", "fqdn", "max_message_size", "max_recipients", "connection_inactivity_timeout", "enabled",
    "permissions", "max_protocol_errors", "max_hop_count", "connection_timeout", "pipelining_enabled", "eight_bit_mime_enabled",
    "size_enabled", "enhanced_status_codes_enabled", "chunking_enabled",
    "max_inbound_connection", "max_inbound_connection_per_source", "message_rate_limit", "protocol_logging_level",
    "tarpit_interval", "max_header_size", "require_tls", "implicit_tls", "tls_certificate_name", "message_rate_source",
    "proxy_protocol", "trusted_proxies", "tls_cipher_profile", "tls_min_version", "bare_linefeeds",
}
BARE_LINEFEEDS = ("normalize", "reject")
ESMTP_TOGGLES = ("pipelining_enabled", "eight_bit_mime_enabled", "size_enabled", "enhanced_status_codes_enabled", "chunking_enabled")
PERMISSION_KEYS = {"user", "extended_rights", "deny"}
HUB_POOL_KEYS = {"hosts", "connect_timeout", "idle_connections", "protocol_logging_level", "reply_timeout"}
QUEUE_KEYS = {
    "directory", "retry_interval", "max_concurrent_deliveries", "transient_retry_attempts", "transient_retry_interval",
    "message_expiration_timeout", "delay_notification_timeout", "max_ndrs_per_sender_domain",
    "max_deliveries_per_next_hop",
    "greeting_timeout", "helo_timeout", "mail_timeout", "rcpt_timeout", "data_init_timeout", "data_done_timeout",
    "data_transfer_timeout",
}
MAILBOX_KEYS = {
    "delivery", "maildir", "next_hop", "protocol_logging_level", "max_mailboxes", "tls", "tls_domain", "tls_ca_file",
    "smart_host_auth", "auth_user", "auth_password", "auth_password_file",
}

DEFAULT_MAX_MESSAGE_SIZE = 36 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 200
DEFAULT_INACTIVITY = {"frontend": 300.0, "hub": 600.0}


def _section(reader: _Reader, raw: dict, name: str, keys: set[str]) -> dict:
    data = raw.get(name, {})
    if not isinstance(data, dict):
        reader.problem(name, "must be a table ([" + name + "])")
        return {}
    return reader.table(data, name, keys)


def _array_of_tables(reader: _Reader, raw: dict, name: str) -> list[dict]:
    data = raw.get(name, [])
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        reader.problem(name, f"must be an array of tables ([[{name}]])")
        return []
    return data


def _read_connector(reader: _Reader, data: dict, index: int, server_name: str, fqdn: str, networks=None) -> ReceiveConnector | None:
    name = data.get("name")
    where = f"receive_connectors[{index}]"
    if isinstance(name, str) and name:
        where = f'receive_connectors[{index}] ("{name}")'
    else:
        reader.problem(f"{where}.name", "every receive connector needs a name")
        name = f"#{index}"
    reader.table(data, where, CONNECTOR_KEYS)
    if "role" not in data:
        reader.problem(f"{where}.role", "required: 'frontend' or 'hub'")
    role = reader.get(data, where, "role", _choice(ROLES), "frontend")
    bindings = reader.items(data, where, "bindings", parse_binding, ())
    if not bindings and "bindings" not in data:
        reader.problem(f"{where}.bindings", "required: a list of 'ip:port'")
    # Each entry is a range or the name of a [networks] list (gateway/networks.py).
    ranges = tuple(r for entry in reader.items(data, where, "remote_ip_ranges", lambda v: resolve_ranges(v, networks or DEFAULT_NETWORKS), ()) for r in entry)
    if "remote_ip_ranges" not in data:
        ranges = (ALL_IPV4, ALL_IPV6)
    elif not ranges:
        reader.problem(f"{where}.remote_ip_ranges", "an empty list would serve no client")
    groups = reader.items(data, where, "permission_groups", lambda v: PermissionGroup(_choice(tuple(g.value for g in PermissionGroup))(v)), ())
    mechanisms = reader.items(data, where, "auth_mechanisms", _choice(AUTH_MECHANISMS), ())
    granted, withheld = _read_permissions(reader, data, where)
    connector = ReceiveConnector(
        granted=granted,
        withheld=withheld,
        name=name,
        server_name=server_name,
        role=role,
        bindings=bindings,
        remote_ip_ranges=ranges,
        permission_groups=frozenset(groups),
        auth_mechanisms=frozenset(mechanisms),
        banner=reader.get(data, where, "banner", _banner, ""),
        fqdn=reader.get(data, where, "fqdn", _fqdn, fqdn),
        max_message_size=reader.get(data, where, "max_message_size", parse_size, DEFAULT_MAX_MESSAGE_SIZE),
        max_recipients=reader.get(data, where, "max_recipients", _positive_int, DEFAULT_MAX_RECIPIENTS),
        connection_inactivity_timeout=reader.get(
            data, where, "connection_inactivity_timeout", parse_duration, DEFAULT_INACTIVITY[role]
        ),
        enabled=reader.get(data, where, "enabled", _bool, True),
        protocol_logging_level=reader.get(data, where, "protocol_logging_level", _choice(("None", "Verbose")), "None"),
        max_protocol_errors=reader.get(data, where, "max_protocol_errors", _positive_int, 5),
        max_hop_count=reader.get(data, where, "max_hop_count", _positive_int, 60),
        tarpit_interval=reader.get(data, where, "tarpit_interval", parse_duration, 5.0),
        max_header_size=reader.get(data, where, "max_header_size", parse_size, 256 * 1024),
        max_inbound_connection=reader.get(data, where, "max_inbound_connection", _limit, 5000),
        # Exchange's hub connector takes every frontend's connections from few addresses.
        max_inbound_connection_per_source=reader.get(
            data, where, "max_inbound_connection_per_source", _limit, 20 if role == "frontend" else None
        ),
        message_rate_limit=reader.get(data, where, "message_rate_limit", _limit, None),
        connection_timeout=reader.get(data, where, "connection_timeout", parse_duration, 600.0),
        require_tls=reader.get(data, where, "require_tls", _bool, False),
        implicit_tls=reader.get(data, where, "implicit_tls", _bool, False),
        tls_certificate_name=reader.get(data, where, "tls_certificate_name", _certificate_identifier, ""),
        message_rate_source=reader.get(data, where, "message_rate_source", _choice(MESSAGE_RATE_SOURCES), "IPAddress"),
        proxy_protocol=reader.get(data, where, "proxy_protocol", _bool, False),
        trusted_proxies=reader.items(data, where, "trusted_proxies", _ip_range, ()),
        **_read_tls_profile(reader, data, where, ranges),
        bare_linefeeds=reader.get(data, where, "bare_linefeeds", _choice(BARE_LINEFEEDS), "normalize"),
        **{key: reader.get(data, where, key, _bool, True) for key in ESMTP_TOGGLES},
    )
    if "BasicAuthRequireTLS" in connector.auth_mechanisms and not connector.uses_tls:
        reader.problem(f"{where}.auth_mechanisms", "BasicAuthRequireTLS needs TLS: add \"Tls\" or set implicit_tls = true")
    if connector.require_tls and not connector.uses_tls:
        reader.problem(f"{where}.require_tls", "require_tls needs TLS offered: add \"Tls\" to auth_mechanisms or set implicit_tls = true")
    if connector.proxy_protocol and not connector.trusted_proxies:
        reader.problem(f"{where}.trusted_proxies", "proxy_protocol needs the balancers' addresses: a header from anyone else is a spoofed client address")
    if connector.basic_auth and "ExternalAuthoritative" in connector.auth_mechanisms:
        reader.problem(f"{where}.auth_mechanisms", "ExternalAuthoritative trusts every client in the remote ranges; it does not mix with BasicAuth")
    return connector


def _read_tls_profile(reader: _Reader, data: dict, where: str, ranges: tuple[IPRange, ...]) -> dict:
    """
    tls_cipher_profile and tls_min_version. A weakened profile (legacy suites,
    TLS below 1.2) is for old devices at known addresses: refused on a
    connector whose remote_ip_ranges are left out or cover a whole address family.
    """
    profile = reader.get(data, where, "tls_cipher_profile", _choice(PROFILES), "modern")
    min_version = reader.get(data, where, "tls_min_version", _choice(tuple(VERSIONS)), default_min_version(profile))
    if profile == "modern" and min_version < SAFE_MIN_VERSION:
        reader.problem(f"{where}.tls_min_version", f"TLS {min_version} has none of the modern cipher suites: set tls_cipher_profile = \"legacy\" too")
    weakened = TLSProfile(profile, min_version).weakened
    if weakened and ("remote_ip_ranges" not in data or any(r.covers(ALL_IPV4) or r.covers(ALL_IPV6) for r in ranges)):
        key = "tls_cipher_profile" if profile == "legacy" else "tls_min_version"
        reader.problem(
            f"{where}.{key}",
            "weakened TLS (legacy suites or TLS below 1.2) is allowed only on a connector whose remote_ip_ranges list "
            "the old devices' addresses; this one is open to every address (0.0.0.0/0 or ::/0)",
        )
    return {"tls_cipher_profile": profile, "tls_min_version": min_version}


def _read_permissions(reader: _Reader, data: dict, where: str) -> tuple[frozenset, frozenset]:
    """`[[receive_connectors.permissions]]`: user, extended_rights, deny (default false)."""
    granted: set = set()
    withheld: set = set()
    entries = data.get("permissions", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        reader.problem(f"{where}.permissions", "must be an array of tables ([[receive_connectors.permissions]])")
        return frozenset(), frozenset()
    for i, entry in enumerate(entries):
        at = f"{where}.permissions[{i}]"
        reader.table(entry, at, PERMISSION_KEYS)
        if "user" not in entry or "extended_rights" not in entry:
            reader.problem(at, "needs user and extended_rights")
            continue
        principal = reader.get(entry, at, "user", lambda v: parse_principal(_string(v)), None)
        rights = reader.items(entry, at, "extended_rights", lambda v: parse_right(_string(v)), ())
        deny = reader.get(entry, at, "deny", _bool, False)
        if principal is not None:
            (withheld if deny else granted).update((principal, right) for right in rights)
    return frozenset(granted), frozenset(withheld)


def _check_bindings(reader: _Reader, connectors: list[ReceiveConnector], where: dict[str, str]) -> None:
    by_binding: dict[Binding, list[ReceiveConnector]] = {}
    for c in connectors:
        if c.enabled:
            for b in c.bindings:
                by_binding.setdefault(b, []).append(c)
    for binding, group in by_binding.items():
        roles = {c.role for c in group}
        if len(roles) > 1:
            reader.problem(
                where[group[0].name] + ".bindings",
                f"{binding} is shared by frontend and hub connectors ({', '.join(repr(c.name) for c in group)}); a port serves one role",
            )
        proxy_settings = {(c.proxy_protocol, c.trusted_proxies) for c in group}
        if len(proxy_settings) > 1:
            reader.problem(
                where[group[-1].name] + ".proxy_protocol",
                f"the connectors on {binding} ({', '.join(repr(c.name) for c in group)}) must agree on proxy_protocol and "
                "trusted_proxies: the header is read before the connector is chosen",
            )
        for a, b, why in range_conflicts(group):
            reader.problem(
                where[b.name] + ".remote_ip_ranges",
                f"connectors {a.name!r} and {b.name!r} both listen on {binding} and the choice between them is ambiguous: {why}",
            )
    wildcard = {"0.0.0.0", "::"}
    for b in by_binding:
        for other in by_binding:
            if b != other and b.port == other.port and b.host in wildcard and b.ipv6 == other.ipv6:
                names = sorted({c.name for c in by_binding[b] + by_binding[other]})
                reader.problem(
                    where[by_binding[other][0].name] + ".bindings",
                    f"{other} and {b} cannot both listen (the wildcard takes the whole port); connectors: {', '.join(names)}",
                )


def parse_config(raw: dict, file: str, base: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError with every problem. Relative paths are under `base` if given."""
    reader = _Reader(file, base)
    reader.table(raw, "", TOP_KEYS)

    server = _section(reader, raw, "server", SERVER_KEYS)
    fqdn = reader.get(server, "server", "fqdn", _fqdn, None) or socket.getfqdn()
    if not valid_domain(fqdn):
        fqdn = "localhost"
    default_name = fqdn.split(".")[0].upper() or "EXGATEWAY"
    server_name = reader.get(server, "server", "name", _string, default_name)
    var_dir = reader.relative(reader.get(server, "server", "var_dir", _string, "var"))
    workers = reader.get(server, "server", "workers", _workers, 1)
    shutdown_grace = reader.get(server, "server", "shutdown_grace", parse_duration, 30.0)
    node_secret_file = var_dir / reader.get(server, "server", "node_secret_file", _string, "node.secret")

    domains = []
    seen_domains: dict[str, int] = {}
    for i, d in enumerate(_array_of_tables(reader, raw, "accepted_domains")):
        where = f"accepted_domains[{i}]"
        reader.table(d, where, DOMAIN_KEYS)
        if "domain" not in d:
            reader.problem(f"{where}.domain", "required")
            continue
        domain = reader.get(d, where, "domain", _accepted_domain_name, None)
        if domain is None:
            continue
        if domain in seen_domains:
            reader.problem(f"{where}.domain", f"{domain!r} is already listed at accepted_domains[{seen_domains[domain]}]")
            continue
        seen_domains[domain] = i
        dtype = reader.get(d, where, "type", lambda v: DomainType(_choice(tuple(t.value for t in DomainType))(v)), DomainType.AUTHORITATIVE)
        domains.append(AcceptedDomain(reader.get(d, where, "name", _string, domain), domain, dtype))

    networks, network_problems = parse_networks(_section(reader, raw, "networks", set(raw["networks"]) if isinstance(raw.get("networks"), dict) else set()))
    for key, reason in network_problems:
        reader.problem(f"networks.{key}", reason)
    connectors: list[ReceiveConnector] = []
    where_of: dict[str, str] = {}
    for i, c in enumerate(_array_of_tables(reader, raw, "receive_connectors")):
        connector = _read_connector(reader, c, i, server_name, fqdn, networks)
        if connector.name in where_of:
            reader.problem(f"receive_connectors[{i}].name", f"{connector.name!r} is already the name of {where_of[connector.name]}")
            continue
        where_of[connector.name] = f'receive_connectors[{i}] ("{connector.name}")'
        connectors.append(connector)
    if not any(c.enabled for c in connectors):
        reader.problem("receive_connectors", "no enabled receive connector: the gateway would accept nothing")
    _check_bindings(reader, connectors, where_of)

    pool = _section(reader, raw, "hub_pool", HUB_POOL_KEYS)
    hub_hosts = reader.items(pool, "hub_pool", "hosts", lambda v: parse_host_port(v, 2525), ())
    if "hosts" not in pool:
        hub_hosts = tuple(
            HostPort("127.0.0.1" if b.host in ("0.0.0.0", "::") else b.host, b.port)
            for c in connectors if c.role == "hub" and c.enabled for b in c.bindings
        )[:1]
    if not hub_hosts and any(c.role == "frontend" and c.enabled for c in connectors):
        reader.problem("hub_pool.hosts", "frontend connectors need at least one hub to hand mail to")
    hub_pool = HubPool(
        hosts=hub_hosts,
        connect_timeout=reader.get(pool, "hub_pool", "connect_timeout", parse_duration, 10.0),
        idle_connections=reader.get(pool, "hub_pool", "idle_connections", _positive_int, 32),
        protocol_logging_level=reader.get(pool, "hub_pool", "protocol_logging_level", _choice(("None", "Verbose")), "Verbose"),
        reply_timeout=reader.get(pool, "hub_pool", "reply_timeout", _positive_duration, 30.0),
    )

    queue = _section(reader, raw, "queue", QUEUE_KEYS)
    queue_config = QueueConfig(
        directory=var_dir / reader.get(queue, "queue", "directory", _string, "queue"),
        retry_interval=reader.get(queue, "queue", "retry_interval", parse_duration, 900.0),
        max_concurrent_deliveries=reader.get(queue, "queue", "max_concurrent_deliveries", _positive_int, 100),
        transient_retry_attempts=reader.get(queue, "queue", "transient_retry_attempts", _count, 6),
        transient_retry_interval=reader.get(queue, "queue", "transient_retry_interval", parse_duration, 60.0),
        message_expiration_timeout=reader.get(queue, "queue", "message_expiration_timeout", parse_duration, 2 * 86400.0),
        delay_notification_timeout=reader.get(queue, "queue", "delay_notification_timeout", _duration_or_off, 4 * 3600.0),
        max_ndrs_per_sender_domain=reader.get(queue, "queue", "max_ndrs_per_sender_domain", _limit, 100),
        max_deliveries_per_next_hop=reader.get(queue, "queue", "max_deliveries_per_next_hop", _positive_int, 20),
        **{key: reader.get(queue, "queue", key, _positive_duration, default) for key, default in (
            ("greeting_timeout", 300.0), ("helo_timeout", 300.0), ("mail_timeout", 300.0), ("rcpt_timeout", 300.0),
            ("data_init_timeout", 120.0), ("data_done_timeout", 600.0), ("data_transfer_timeout", 180.0),
        )},
    )
    if queue_config.delay_notification_timeout is not None and queue_config.delay_notification_timeout >= queue_config.message_expiration_timeout:
        reader.problem("queue.delay_notification_timeout", "must be shorter than message_expiration_timeout (or \"off\")")

    mailbox = _section(reader, raw, "mailbox", MAILBOX_KEYS)
    delivery = reader.get(mailbox, "mailbox", "delivery", _choice(("maildir", "smtp")), "maildir")
    next_hop = reader.get(mailbox, "mailbox", "next_hop", parse_host_port, None)
    if delivery == "smtp" and next_hop is None:
        reader.problem("mailbox.next_hop", "delivery = 'smtp' needs next_hop = 'host:port'")
    mailbox_config = MailboxConfig(
        delivery=delivery,
        maildir=var_dir / reader.get(mailbox, "mailbox", "maildir", _string, "mailboxes"),
        next_hop=next_hop,
        protocol_logging_level=reader.get(mailbox, "mailbox", "protocol_logging_level", _choice(("None", "Verbose")), "None"),
        max_mailboxes=reader.get(mailbox, "mailbox", "max_mailboxes", _limit, 10_000),
        **_read_next_hop_security(reader, mailbox, "mailbox", var_dir),
    )

    send_connectors = []
    for i, data in enumerate(_array_of_tables(reader, raw, "send_connectors")):
        where = f"send_connectors[{i}]"
        reader.table(data, where, SEND_CONNECTOR_KEYS)
        name = reader.get(data, where, "name", _string, "")
        if not name:
            reader.problem(f"{where}.name", "every send connector needs a name")
        elif name in {c.name for c in send_connectors}:
            reader.problem(f"{where}.name", f"{name!r} is already the name of another send connector")
        port = reader.get(data, where, "port", parse_port, 25)
        spaces = reader.items(data, where, "address_spaces", _address_space, ())
        hosts = reader.items(data, where, "smart_hosts", lambda v: parse_host_port(v, port), ())
        if not spaces:
            reader.problem(f"{where}.address_spaces", "required: e.g. [\"*\"] or [\"partner.example\", \"*.partner.example\"]")
        if data.get("smart_hosts") == []:
            reader.problem(f"{where}.smart_hosts", "an empty list: leave smart_hosts out for DNS MX routing, or name one or more host[:port]")
        auth_user = reader.get(data, where, "auth_user", _string, "")
        auth = reader.get(data, where, "smart_host_auth", _choice(("None", "BasicAuth", "BasicAuthRequireTLS", *OAUTH_MECHANISMS)),
                          "BasicAuthRequireTLS" if auth_user else "None")
        ca_file = reader.get(data, where, "tls_ca_file", _string, "")

        def path_or_none(key: str) -> Path | None:
            value = reader.get(data, where, key, _string, "")
            return reader.relative(value) if value else None

        connector = SendConnector(
            name=name, address_spaces=spaces, smart_hosts=hosts,
            cost=reader.get(data, where, "cost", _positive_int, 1), enabled=reader.get(data, where, "enabled", _bool, True),
            port=port, fqdn=reader.get(data, where, "fqdn", _fqdn, fqdn),
            connection_timeout=reader.get(data, where, "connection_timeout", parse_duration, 30.0),
            tls=reader.get(data, where, "tls", _choice(("none", "opportunistic", "required")), "opportunistic"),
            tls_domain=reader.get(data, where, "tls_domain", _fqdn, ""),
            tls_ca_file=reader.relative(ca_file) if ca_file else None,
            tls_client_certificate_name=reader.get(data, where, "tls_client_certificate_name", _certificate_identifier, ""),
            smart_host_auth=auth, auth_user=auth_user,
            auth_password=reader.get(data, where, "auth_password", _string, ""),
            oauth_token_url=reader.get(data, where, "oauth_token_url", _https_url, ""),
            oauth_client_id=reader.get(data, where, "oauth_client_id", _string, ""),
            oauth_scope=reader.get(data, where, "oauth_scope", _string, ""),
            oauth_client_secret_file=path_or_none("oauth_client_secret_file"),
            oauth_client_certificate_name=reader.get(data, where, "oauth_client_certificate_name", _certificate_identifier, ""),
            oauth_service_account_file=path_or_none("oauth_service_account_file"),
            oauth_ca_file=path_or_none("oauth_ca_file"),
            source_senders=reader.items(data, where, "source_senders", _sender_pattern, ()),
            source_receive_connectors=reader.items(data, where, "source_receive_connectors", _string, ()),
            source_users=reader.items(data, where, "source_users", _string, ()),
            max_message_size=reader.get(data, where, "max_message_size", parse_size, None),
            max_connections=reader.get(data, where, "max_connections", _positive_int, 20),
            max_messages_per_connection=reader.get(data, where, "max_messages_per_connection", _positive_int, 20),
            protocol_logging_level=reader.get(data, where, "protocol_logging_level", _choice(("None", "Verbose")), "None"),
        )
        _check_oauth(reader, where, connector, data)
        if connector.smart_host_auth != "None":
            if connector.dns_routing:
                reader.problem(f"{where}.smart_host_auth", "AUTH is for smart hosts; this connector routes by MX")
            if connector.smart_host_auth in OAUTH_MECHANISMS:
                pass
            elif not connector.auth_user or not connector.auth_password:
                reader.problem(f"{where}.auth_user", "smart_host_auth needs auth_user and auth_password")
            if connector.smart_host_auth == "BasicAuthRequireTLS" and connector.tls == "none":
                reader.problem(f"{where}.tls", "BasicAuthRequireTLS needs TLS: tls = \"opportunistic\" or \"required\" (or smart_host_auth = \"BasicAuth\" to send credentials in clear)")
        if (connector.tls_domain or connector.tls_ca_file) and connector.tls != "required":
            reader.problem(f"{where}.tls", "tls_domain and tls_ca_file check certificates, which only tls = \"required\" does")
        if connector.tls_client_certificate_name and connector.tls == "none":
            reader.problem(f"{where}.tls", "tls_client_certificate_name is presented in a TLS session: tls = \"opportunistic\" or \"required\"")
        known = {n.lower() for c in connectors for n in (c.name, c.identity)}
        for j, name in enumerate(connector.source_receive_connectors):
            if name.lower() not in known:
                reader.problem(f"{where}.source_receive_connectors[{j}]", f"no receive connector is called {name!r}")
        send_connectors.append(connector)

    dns_section = _section(reader, raw, "dns", DNS_KEYS)
    dns_config = DNSConfig(
        servers=reader.items(dns_section, "dns", "servers", lambda v: parse_host_port(v, 53), ()),
        timeout=reader.get(dns_section, "dns", "timeout", parse_duration, 10.0),
    )
    for i, server in enumerate(dns_config.servers):
        try:
            ipaddress.ip_address(server.host)
        except ValueError:
            reader.problem(f"dns.servers[{i}]", f"{server.host!r}: a DNS server is given by IP address")
    certs = _section(reader, raw, "certificates", CERTIFICATE_KEYS)
    certificate_dir = var_dir / reader.get(certs, "certificates", "directory", _string, "certs")
    auth = _read_auth(reader, _section(reader, raw, "authentication", AUTH_KEYS), var_dir)
    rv = _section(reader, raw, "recipient_validation", RECIPIENT_VALIDATION_KEYS)
    recipient_validation = RecipientValidationConfig(
        sources=reader.items(rv, "recipient_validation", "sources", _choice(("users_file", "ldap", "list", "callout")),
                             ("ldap",) if auth.ldap is not None else ()),
        list_file=var_dir / reader.get(rv, "recipient_validation", "list_file", _string, "recipients.txt"),
        cache_ttl=reader.get(rv, "recipient_validation", "cache_ttl", parse_duration, 300.0),
    )
    if "ldap" in recipient_validation.sources and auth.ldap is None:
        reader.problem("recipient_validation.sources", "\"ldap\" is listed but there is no [authentication.ldap] section")
    if "callout" in recipient_validation.sources and delivery != "smtp":
        reader.problem("recipient_validation.sources", "\"callout\" asks the mailbox next hop: it needs [mailbox] delivery = \"smtp\"")

    plog = _section(reader, raw, "protocol_log", PROTOCOL_LOG_KEYS)
    protocol_log = ProtocolLogConfig(
        directory=var_dir / reader.get(plog, "protocol_log", "directory", _string, "logs/ProtocolLog"),
        max_file_size=reader.get(plog, "protocol_log", "max_file_size", parse_size, 10 * 1024 * 1024),
        max_age=reader.get(plog, "protocol_log", "max_age", parse_duration, 30 * 86400.0),
        max_directory_size=reader.get(plog, "protocol_log", "max_directory_size", parse_size, 250 * 1024 * 1024),
    )

    mt = _section(reader, raw, "message_tracking", TRACKING_KEYS)
    message_tracking = MessageTrackingConfig(
        enabled=reader.get(mt, "message_tracking", "enabled", _bool, True),
        directory=var_dir / reader.get(mt, "message_tracking", "directory", _string, "logs/MessageTracking"),
        max_file_size=reader.get(mt, "message_tracking", "max_file_size", parse_size, 10 * 1024 * 1024),
        max_age=reader.get(mt, "message_tracking", "max_age", parse_duration, 30 * 86400.0),
        max_directory_size=reader.get(mt, "message_tracking", "max_directory_size", parse_size, 1000 * 1024 * 1024),
    )
    for section, logs in (("protocol_log", protocol_log), ("message_tracking", message_tracking)):
        if logs.max_directory_size < logs.max_file_size:
            reader.problem(f"{section}.max_directory_size", "must be at least max_file_size")

    limits_section = _section(reader, raw, "limits", LIMITS_KEYS)
    limits = LimitsConfig(
        ipv6_source_prefix=reader.get(limits_section, "limits", "ipv6_source_prefix", _ipv6_prefix, 64),
        junk_command_limit=reader.get(limits_section, "limits", "junk_command_limit", _positive_int, 100),
    )

    admin = _section(reader, raw, "admin", ADMIN_KEYS)
    admin_socket = var_dir / reader.get(admin, "admin", "socket", _string, "run/admin.sock")
    if len(str(admin_socket.absolute())) > 100:
        reader.problem("admin.socket", f"{admin_socket.absolute()} is too long for a UNIX socket path (at most 100 characters)")

    health = _section(reader, raw, "health", HEALTH_KEYS)
    health_listen = reader.get(health, "health", "listen", parse_binding, None)
    health_frontend_listen = reader.get(health, "health", "frontend_listen", parse_binding, None)
    min_free_space = reader.get(health, "health", "min_free_space", parse_size, 100 * 1024 * 1024)
    max_memory_percent = reader.get(health, "health", "max_memory_percent", _memory_percent, 94.0)

    rewrite = read_rewrite_rules(reader, raw, AcceptedDomains(domains))
    dkim = read_dkim_config(reader, raw, var_dir)
    journal_rules = read_journal_rules(reader, raw, journal_routable(domains, send_connectors))

    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(
        path=Path(file),
        server_name=server_name,
        fqdn=fqdn,
        var_dir=var_dir,
        node_secret_file=node_secret_file,
        workers=workers,
        shutdown_grace=shutdown_grace,
        accepted_domains=tuple(domains),
        receive_connectors=tuple(connectors),
        hub_pool=hub_pool,
        queue=queue_config,
        mailbox=mailbox_config,
        protocol_log=protocol_log,
        send_connectors=tuple(send_connectors),
        certificate_dir=certificate_dir,
        auth=auth,
        dns=dns_config,
        message_tracking=message_tracking,
        recipient_validation=recipient_validation,
        admin_socket=admin_socket,
        health_listen=health_listen,
        health_frontend_listen=health_frontend_listen,
        min_free_space=min_free_space,
        max_memory_percent=max_memory_percent,
        limits=limits,
        rewrite=rewrite,
        dkim=dkim,
        journal_rules=journal_rules,
    )


def _read_next_hop_security(reader: _Reader, data: dict, where: str, var_dir: Path) -> dict:
    """
    TLS and AUTH to the mailbox next hop: the keys and checks of a send
    connector with smart hosts, plus auth_password_file (the password's
    first line, relative to var_dir) to keep the secret out of this file.
    """
    auth_user = reader.get(data, where, "auth_user", _string, "")
    password = reader.get(data, where, "auth_password", _string, "")
    password_file = reader.get(data, where, "auth_password_file", _string, "")
    if password_file:
        if password:
            reader.problem(f"{where}.auth_password_file", "give auth_password or auth_password_file, not both")
        try:
            password = (var_dir / password_file).read_text(encoding="utf-8").splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError) as e:
            reader.problem(f"{where}.auth_password_file", f"cannot read a password from {var_dir / password_file}: {e or 'empty file'}")
    ca_file = reader.get(data, where, "tls_ca_file", _string, "")
    values = dict(
        tls=reader.get(data, where, "tls", _choice(("none", "opportunistic", "required")), "opportunistic"),
        tls_domain=reader.get(data, where, "tls_domain", _fqdn, ""),
        tls_ca_file=var_dir / ca_file if ca_file else None,
        smart_host_auth=reader.get(data, where, "smart_host_auth", _choice(("None", "BasicAuth", "BasicAuthRequireTLS")),
                                   "BasicAuthRequireTLS" if auth_user else "None"),
        auth_user=auth_user,
        auth_password=password,
    )
    if values["smart_host_auth"] != "None":
        if not auth_user or not password:
            reader.problem(f"{where}.auth_user", "smart_host_auth needs auth_user and auth_password (or auth_password_file)")
        if values["smart_host_auth"] == "BasicAuthRequireTLS" and values["tls"] == "none":
            reader.problem(f"{where}.tls", "BasicAuthRequireTLS needs TLS: tls = \"opportunistic\" or \"required\" (or smart_host_auth = \"BasicAuth\" to send credentials in clear)")
    if (values["tls_domain"] or values["tls_ca_file"]) and values["tls"] != "required":
        reader.problem(f"{where}.tls", "tls_domain and tls_ca_file check certificates, which only tls = \"required\" does")
    return values


def _read_auth(reader: _Reader, data: dict, var_dir: Path) -> AuthConfig:
    """[authentication] and [authentication.ldap]."""
    w = "authentication"
    backends = reader.items(data, w, "backends", _choice(AUTH_BACKENDS), ("users_file",))
    ldap = None
    raw_ldap = data.get("ldap")
    if raw_ldap is not None:
        if not isinstance(raw_ldap, dict):
            reader.problem(f"{w}.ldap", "must be a table ([authentication.ldap])")
            raw_ldap = {}
        reader.table(raw_ldap, f"{w}.ldap", LDAP_KEYS)
        wl = f"{w}.ldap"
        for key in ("url", "base_dn"):
            if key not in raw_ldap:
                reader.problem(f"{wl}.{key}", "required")
        ca_file = reader.get(raw_ldap, wl, "ca_file", _string, None)
        ldap = LDAPConfig(
            url=reader.get(raw_ldap, wl, "url", _ldap_url, "ldap://localhost"),
            base_dn=reader.get(raw_ldap, wl, "base_dn", _string, ""),
            bind_dn=reader.get(raw_ldap, wl, "bind_dn", _string, ""),
            bind_password=reader.get(raw_ldap, wl, "bind_password", _string, ""),
            start_tls=reader.get(raw_ldap, wl, "start_tls", _bool, False),
            ca_file=reader.relative(ca_file) if ca_file else None,
            login_attributes=reader.items(raw_ldap, wl, "login_attributes", _ldap_attribute, LDAPConfig.login_attributes),
            sender_attributes=reader.items(raw_ldap, wl, "sender_attributes", _ldap_attribute, LDAPConfig.sender_attributes),
            timeout=reader.get(raw_ldap, wl, "timeout", parse_duration, 5.0),
        )
        if ldap.start_tls and ldap.host_port[2]:
            reader.problem(f"{wl}.start_tls", "ldaps:// is already TLS; start_tls is for ldap:// URLs")
        if bool(ldap.bind_dn) != bool(ldap.bind_password):
            reader.problem(f"{wl}.bind_password", "bind_dn and bind_password go together (or leave both out to search anonymously)")
    if "ldap" in backends and ldap is None:
        reader.problem(f"{w}.backends", "\"ldap\" is listed but there is no [authentication.ldap] section")
    return AuthConfig(
        backends=backends,
        users_file=var_dir / reader.get(data, w, "users_file", _string, "users.toml"),
        ldap=ldap,
        failure_tarpit=reader.get(data, w, "failure_tarpit", parse_duration, 2.0),
        max_failures_per_connection=reader.get(data, w, "max_failures_per_connection", _positive_int, 3),
        max_failures_per_source=reader.get(data, w, "max_failures_per_source", _positive_int, 10),
        max_failures_per_user=reader.get(data, w, "max_failures_per_user", _positive_int, 20),
        failure_window=reader.get(data, w, "failure_window", parse_duration, 900.0),
        lockout=reader.get(data, w, "lockout", parse_duration, 900.0),
        check_header_from=reader.get(data, w, "check_header_from", _bool, False),
        credential_cache_ttl=reader.get(data, w, "credential_cache_ttl", parse_duration, 3600.0),
        header_from=reader.get(data, w, "header_from", _choice(("refuse", "authenticated_user")), "refuse"),
    )


def _ldap_attribute(value: Any) -> str:
    value = _string(value)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", value):
        raise ValueError(f"{value!r} is not an LDAP attribute name")
    return value


def path_problems(config: Config) -> list[ConfigProblem]:
    """
    Directories the gateway will create or write, checked without touching
    anything: each must exist and be writable, or be creatable under the
    nearest existing parent.
    """
    import os

    checks = [("server.var_dir", config.var_dir), ("queue.directory", config.queue.directory),
              ("protocol_log.directory", config.protocol_log.directory), ("certificates.directory", config.certificate_dir)]
    if config.message_tracking.enabled:
        checks.append(("message_tracking.directory", config.message_tracking.directory))
    if config.mailbox.delivery == "maildir":
        checks.append(("mailbox.maildir", config.mailbox.maildir))
    problems = []
    for key, path in checks:
        probe = path.absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            problems.append(ConfigProblem(str(config.path), key, f"{path} cannot be created: {probe} is not a directory"))
        elif not os.access(probe, os.W_OK | os.X_OK):
            verb = "is not writable" if probe == path.absolute() else f"cannot be created: {probe} is not writable"
            problems.append(ConfigProblem(str(config.path), key, f"{path} {verb}"))
    return problems


def load_config(path: str | Path | None = None) -> Config:
    """
    Read and validate a config file (the packaged sample if None; which file
    an entry point uses: gateway/configpath.find_config). Its relative paths
    are made absolute here, against configpath.base_directory.
    """
    path = Path(path).absolute() if path is not None else default_config_path().absolute()
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError([ConfigProblem(str(path), "(file)", e.strerror or str(e))]) from None
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigProblem(str(path), "(file)", f"not UTF-8: {e}")]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([ConfigProblem(str(path), "(syntax)", str(e))]) from None
    return parse_config(raw, str(path), base_directory(path))


__all__ = ["Config", "ConfigError", "ConfigProblem", "load_config", "parse_config", "default_config_path"]
