"""
The frozen objects a config file becomes: one per section, and Config for
the whole file.

What a setting means and its default are in the schema
(gateway/config/schema.py); a field's default is taken from there, for code
and tests that build these objects directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import schema
from gateway.config.values import Binding, HostPort, split_host_port
from gateway.connectors import IPRange
from gateway.deliver.security import OutboundSecurity
from gateway.deliver.timeouts import PhaseTimeouts
from gateway.domains import AcceptedDomain
from gateway.journal import JournalRule
from gateway.policy.rights import PermissionGroup, Principal, Right
from gateway.queue.retry import RetryPolicy
from gateway.rewrite import RewriteRule
from gateway.sign.dkim import DKIMConfig

# A field's default is the schema's, written once there (a path's is not: the schema's is relative to var_dir).
_RECEIVE = schema.RECEIVE_CONNECTOR.default
_HUB_POOL = schema.HUB_POOL.default
_QUEUE = schema.QUEUE.default
_MAILBOX = schema.MAILBOX.default
_SEND = schema.SEND_CONNECTOR.default
_DNS = schema.DNS.default
_LDAP = schema.LDAP.default
_AUTH = schema.AUTHENTICATION.default
_RECIPIENTS = schema.RECIPIENT_VALIDATION.default
_PROTOCOL_LOG = schema.PROTOCOL_LOG.default
_TRACKING = schema.MESSAGE_TRACKING.default
_LIMITS = schema.LIMITS.default
_SERVER = schema.SERVER.default
_HEALTH = schema.HEALTH.default


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
    protocol_logging_level: str = _RECEIVE("protocol_logging_level")
    tarpit_interval: float = _RECEIVE("tarpit_interval")
    max_header_size: int = _RECEIVE("max_header_size")
    max_protocol_errors: int = _RECEIVE("max_protocol_errors")
    # Exchange's MaxHopCount: more Received: fields than this is a mail loop (554 5.4.6).
    max_hop_count: int = _RECEIVE("max_hop_count")
    # None is Exchange's "unlimited".
    max_inbound_connection: int | None = _RECEIVE("max_inbound_connection")
    max_inbound_connection_per_source: int | None = 20
    message_rate_limit: int | None = _RECEIVE("message_rate_limit")
    connection_timeout: float = _RECEIVE("connection_timeout")
    pipelining_enabled: bool = _RECEIVE("pipelining_enabled")
    eight_bit_mime_enabled: bool = _RECEIVE("eight_bit_mime_enabled")
    size_enabled: bool = _RECEIVE("size_enabled")
    enhanced_status_codes_enabled: bool = _RECEIVE("enhanced_status_codes_enabled")
    chunking_enabled: bool = _RECEIVE("chunking_enabled")
    # Extended rights given to, or withheld from, a principal on this connector
    # (Exchange's Add-ADPermission / Remove-ADPermission on a receive connector).
    granted: frozenset[tuple[Principal, Right]] = frozenset()
    withheld: frozenset[tuple[Principal, Right]] = frozenset()
    # TLS: STARTTLS is offered with the "Tls" mechanism; implicit_tls (port 465,
    # RFC 8314) starts TLS before the banner. require_tls is Exchange's RequireTLS.
    require_tls: bool = _RECEIVE("require_tls")
    implicit_tls: bool = _RECEIVE("implicit_tls")
    # A thumbprint or "<I>issuer<S>subject"; empty: the certificate matching fqdn.
    tls_certificate_name: str = _RECEIVE("tls_certificate_name")
    # Exchange's MessageRateSource: whom message_rate_limit counts.
    message_rate_source: str = _RECEIVE("message_rate_source")
    # HAProxy's PROXY protocol (v1/v2), accepted only from these balancers.
    proxy_protocol: bool = _RECEIVE("proxy_protocol")
    trusted_proxies: tuple[IPRange, ...] = _RECEIVE("trusted_proxies")
    # TLS profile (gateway/tls/profiles.py); weakened only on a connector with scoped remote ranges.
    tls_cipher_profile: str = _RECEIVE("tls_cipher_profile")
    tls_min_version: str = "1.2"
    # Bare CR or LF inside a message: turned into CRLF, or the message refused (gateway/smtpd/data.py).
    bare_linefeeds: str = _RECEIVE("bare_linefeeds")

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
class HubPool:
    hosts: tuple[HostPort, ...]
    connect_timeout: float
    idle_connections: int
    protocol_logging_level: str = _HUB_POOL("protocol_logging_level")
    # The longest wait for any reply of a hub (greeting: connect_timeout): a hub
    # that stops answering (frozen, SIGSTOP) is failed over after this long.
    reply_timeout: float = _HUB_POOL("reply_timeout")


@dataclass(frozen=True)
class QueueConfig:
    directory: Path
    retry_interval: float
    max_concurrent_deliveries: int
    # Exchange's TransientFailureRetryAttempts / -Interval, MessageExpirationTimeout,
    # DelayNotificationTimeout (None: no delay notices).
    transient_retry_attempts: int = _QUEUE("transient_retry_attempts")
    transient_retry_interval: float = _QUEUE("transient_retry_interval")
    message_expiration_timeout: float = _QUEUE("message_expiration_timeout")
    delay_notification_timeout: float | None = _QUEUE("delay_notification_timeout")
    # Notices (NDRs, delay notices) per sender domain and hour; None: unlimited (queue/noticelimit.py).
    max_ndrs_per_sender_domain: int | None = _QUEUE("max_ndrs_per_sender_domain")
    # Attempts in flight to one next hop (a send connector's max_connections may lower it).
    max_deliveries_per_next_hop: int = _QUEUE("max_deliveries_per_next_hop")
    # The delivery client's wait for each reply, by phase (gateway/deliver/timeouts.py), as Postfix's smtp_*_timeout.
    greeting_timeout: float = _QUEUE("greeting_timeout")
    helo_timeout: float = _QUEUE("helo_timeout")
    mail_timeout: float = _QUEUE("mail_timeout")
    rcpt_timeout: float = _QUEUE("rcpt_timeout")
    data_init_timeout: float = _QUEUE("data_init_timeout")
    data_done_timeout: float = _QUEUE("data_done_timeout")
    data_transfer_timeout: float = _QUEUE("data_transfer_timeout")

    def delivery_timeouts(self) -> PhaseTimeouts:
        return PhaseTimeouts(
            greeting=self.greeting_timeout, helo=self.helo_timeout, mail=self.mail_timeout, rcpt=self.rcpt_timeout,
            data_init=self.data_init_timeout, data_done=self.data_done_timeout, data_xfer=self.data_transfer_timeout,
        )

    def retry_policy(self) -> RetryPolicy:
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
    protocol_logging_level: str = _MAILBOX("protocol_logging_level")
    # Mailboxes the Maildir delivery may create (a new local part past it is deferred); None: no cap.
    max_mailboxes: int | None = _MAILBOX("max_mailboxes")
    # For delivery = "smtp": TLS and AUTH to the mail store, as on a send connector.
    tls: str = _MAILBOX("tls")
    tls_domain: str = _MAILBOX("tls_domain")
    tls_ca_file: Path | None = None
    smart_host_auth: str = "None"
    auth_user: str = _MAILBOX("auth_user")
    auth_password: str = field(default=_MAILBOX("auth_password"), repr=False)

    def security(self) -> OutboundSecurity:
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
    cost: int = _SEND("cost")
    enabled: bool = _SEND("enabled")
    port: int = _SEND("port")
    fqdn: str = ""
    connection_timeout: float = _SEND("connection_timeout")
    # "none", "opportunistic" (Exchange's default) or "required" (certificate checked).
    tls: str = _SEND("tls")
    tls_domain: str = _SEND("tls_domain")
    tls_ca_file: Path | None = None
    # Exchange's TlsCertificateName on a send connector: the certificate (a thumbprint or
    # <I>issuer<S>subject, from the store) presented to a next hop that asks for one.
    tls_client_certificate_name: str = _SEND("tls_client_certificate_name")
    # Exchange's SmartHostAuthMechanism: None, BasicAuth, BasicAuthRequireTLS; or XOAUTH2 / OAUTHBEARER
    # with a token from oauth_token_url (gateway/deliver/oauth.py). auth_user: the mailbox to log in as.
    smart_host_auth: str = "None"
    auth_user: str = _SEND("auth_user")
    auth_password: str = field(default=_SEND("auth_password"), repr=False)
    oauth_token_url: str = _SEND("oauth_token_url")
    oauth_client_id: str = _SEND("oauth_client_id")
    oauth_scope: str = _SEND("oauth_scope")
    # The credential, one of: a file holding the client secret, a certificate from the store
    # (Microsoft's certificate credential), a Google service account's JSON key.
    oauth_client_secret_file: Path | None = None
    oauth_client_certificate_name: str = _SEND("oauth_client_certificate_name")
    oauth_service_account_file: Path | None = None
    # Trust for the token endpoint's certificate; None: the system's trust store.
    oauth_ca_file: Path | None = None
    # Sender-dependent routing (gateway/route/source.py): empty serves every source.
    source_senders: tuple[str, ...] = _SEND("source_senders")
    source_receive_connectors: tuple[str, ...] = _SEND("source_receive_connectors")
    source_users: tuple[str, ...] = _SEND("source_users")
    max_message_size: int | None = _SEND("max_message_size")
    # Exchange's MaxPerDomainOutboundConnections and SmtpMaxMessagesPerConnection.
    max_connections: int = _SEND("max_connections")
    max_messages_per_connection: int = _SEND("max_messages_per_connection")
    # Exchange's ProtocolLoggingLevel: "Verbose" writes the SMTP Send Protocol Log (Hub/SmtpSend).
    protocol_logging_level: str = _SEND("protocol_logging_level")

    @property
    def dns_routing(self) -> bool:
        return not self.smart_hosts

    def security(self) -> OutboundSecurity:
        return OutboundSecurity(self.tls, self.tls_domain, self.tls_ca_file, self.smart_host_auth, self.auth_user, self.auth_password)




@dataclass(frozen=True)
class DNSConfig:
    """Which DNS servers the hub asks for MX/A/AAAA; empty: the system's (/etc/resolv.conf)."""

    servers: tuple[HostPort, ...] = _DNS("servers")
    timeout: float = _DNS("timeout")


@dataclass(frozen=True)
class LDAPConfig:
    """An LDAP / Active Directory credential backend: find the user's DN, then bind as it."""

    url: str
    base_dn: str
    bind_dn: str = _LDAP("bind_dn")
    bind_password: str = _LDAP("bind_password")
    start_tls: bool = _LDAP("start_tls")
    ca_file: Path | None = None
    login_attributes: tuple[str, ...] = _LDAP("login_attributes")
    sender_attributes: tuple[str, ...] = _LDAP("sender_attributes")
    timeout: float = _LDAP("timeout")

    @property
    def host_port(self) -> tuple[str, int, bool]:
        """(host, port, ldaps) from the URL."""
        scheme, _, rest = self.url.partition("://")
        host, port = split_host_port(rest.rstrip("/")) if ":" in rest.rstrip("/") else (rest.rstrip("/"), "")
        ldaps = scheme.lower() == "ldaps"
        return host, int(port) if port else (636 if ldaps else 389), ldaps


@dataclass(frozen=True)
class AuthConfig:
    """How AUTH is checked, and the brute-force defence around it."""

    backends: tuple[str, ...] = _AUTH("backends")
    users_file: Path = Path("users.toml")
    ldap: LDAPConfig | None = None
    failure_tarpit: float = _AUTH("failure_tarpit")
    max_failures_per_connection: int = _AUTH("max_failures_per_connection")
    max_failures_per_source: int = _AUTH("max_failures_per_source")
    max_failures_per_user: int = _AUTH("max_failures_per_user")
    failure_window: float = _AUTH("failure_window")
    lockout: float = _AUTH("lockout")
    check_header_from: bool = _AUTH("check_header_from")
    # How long a verified password is remembered (gateway/auth/credcache.py); 0: verify every login.
    credential_cache_ttl: float = _AUTH("credential_cache_ttl")
    # What check_header_from does with a From: the user may not send as: refuse (550 5.7.60),
    # or "authenticated_user": replace it with the user's address (gateway/policy/headerfrom.py).
    header_from: str = _AUTH("header_from")


@dataclass(frozen=True)
class RecipientValidationConfig:
    """[recipient_validation]: who is a recipient of the authoritative domains (gateway/policy/recipients.py)."""

    # Empty: off. Default: ("ldap",) when [authentication.ldap] exists (a directory knows the organisation's recipients).
    sources: tuple[str, ...] = ()
    list_file: Path = Path("var/recipients.txt")
    cache_ttl: float = _RECIPIENTS("cache_ttl")


@dataclass(frozen=True)
class ProtocolLogConfig:
    directory: Path
    max_file_size: int
    max_age: float
    # Exchange's MaxDirectorySize: past it the oldest files go.
    max_directory_size: int = _PROTOCOL_LOG("max_directory_size")


@dataclass(frozen=True)
class MessageTrackingConfig:
    """Exchange's MessageTrackingLogEnabled, -Path, -MaxFileSize, -MaxAge."""

    enabled: bool = _TRACKING("enabled")
    directory: Path = Path("var/logs/MessageTracking")
    max_file_size: int = _TRACKING("max_file_size")
    max_age: float = _TRACKING("max_age")
    max_directory_size: int = _TRACKING("max_directory_size")


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: bounds on what clients can make the gateway count and keep (restart to change)."""

    # IPv6 clients are counted per network of this prefix for the per-source
    # connection and message-rate limits: one host holds a whole /64.
    ipv6_source_prefix: int = _LIMITS("ipv6_source_prefix")
    # NOOP, RSET, VRFY, HELP and unknown commands a session may send between
    # accepted messages (Postfix's smtpd_junk_command_limit), then 421 4.7.0.
    junk_command_limit: int = _LIMITS("junk_command_limit")


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
    health_listen: Binding | None = _HEALTH("listen")
    health_frontend_listen: Binding | None = _HEALTH("frontend_listen")
    min_free_space: int = _HEALTH("min_free_space")
    # Back pressure on memory: MAIL refused above this share of physical memory in use (Exchange's PercentagePhysicalMemoryUsedLimit).
    max_memory_percent: float = _HEALTH("max_memory_percent")
    # Processes serving this node (gateway/workers.py); 1: the twistd process alone.
    workers: int = _SERVER("workers")
    limits: LimitsConfig = LimitsConfig()
    # At a stop, how long a message in DATA/BDAT may take to finish (gateway/smtpd/shutdown.py).
    shutdown_grace: float = _SERVER("shutdown_grace")
    # The secret every gateway node shares (gateway/auth/node.py): made at first start, copied to the others.
    node_secret_file: Path = Path("var/node.secret")
    # [[rewrite]]: address rewriting at the hub's intake (gateway/rewrite.py).
    rewrite: tuple[RewriteRule, ...] = ()
    # [dkim]: signing at the hub's intake (gateway/sign/dkim.py).
    dkim: DKIMConfig = DKIMConfig()
    # [[journal_rules]]: journal copies made at the hub's intake (gateway/journal.py).
    journal_rules: tuple[JournalRule, ...] = ()

    def connectors(self, role: str) -> tuple[ReceiveConnector, ...]:
        return tuple(c for c in self.receive_connectors if c.role == role)


