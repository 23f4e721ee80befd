"""
A config file in, a frozen Config out, or a ConfigError naming every problem.

Every problem in a file is collected and reported at once, each naming the
file, the key and the reason, so an admin fixes a broken file in one pass
instead of one restart per typo. Unknown sections and keys are errors: a
misspelt setting that is silently ignored is how open relays happen.

Relative paths: `server.var_dir` and CA files are relative to the config
file's directory (the packaged sample's to the current directory: see
gateway/configpath.py), so every process reading one file uses the same
directories; queue, mailbox, log and certificate directories are relative
to `var_dir`.

What parsing needs of the machine it runs on (its FQDN when the file names
none, its CPUs for workers = "auto") comes in as a Host, so the readers
themselves read nothing but the document.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.address import valid_domain
from gateway.config import schema as s
from gateway.config.hop import check_hop_security, read_hop_security
from gateway.config.reader import ConfigError, ConfigProblem, Reader
from gateway.config.receive import read_receive_connectors
from gateway.config.send import read_send_connectors
from gateway.config.settings import (
    AuthConfig,
    Config,
    DNSConfig,
    HubPool,
    LDAPConfig,
    LimitsConfig,
    MailboxConfig,
    MessageTrackingConfig,
    ProtocolLogConfig,
    QueueConfig,
    ReceiveConnector,
    RecipientValidationConfig,
)
from gateway.config.values import HostPort, workers_parser
from gateway.configpath import base_directory, packaged_sample
from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.journal import read_rules as read_journal_rules
from gateway.journal import routable as journal_routable
from gateway.networks import parse_networks
from gateway.rewrite import read_rules as read_rewrite_rules
from gateway.sign.dkim import read_config as read_dkim_config


@dataclass(frozen=True)
class Host:
    """What a file may leave to the machine: asked only when the file leaves it out."""

    fqdn: Callable[[], str]
    cpus: Callable[[], int]


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def this_host() -> Host:
    """The machine this process runs on."""
    return Host(fqdn=socket.getfqdn, cpus=_usable_cpus)


def default_config_path() -> Path:
    """The annotated sample inside the package (which file a process uses: gateway/configpath.py)."""
    return packaged_sample()


def load_config(path: str | Path | None = None, host: Host | None = None) -> Config:
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
    return parse_config(raw, str(path), base_directory(path), host)


def _cpus_per_role(raw: dict, host: Host) -> Callable[[], int]:
    """
    The CPUs `workers = "auto"` counts: all of them, or half each when this
    file runs a hub and a frontend on one machine (`[health] frontend_listen`
    is set, which only that layout needs). Each role would otherwise start a
    worker per CPU, twice as many processes as cores: measured on 2 cores
    (bench/RESULTS.md), one worker per role instead of two delivered 1.07x
    the messages at 0.79x the CPU per message, in half the memory.
    """
    health = raw.get("health")
    if isinstance(health, dict) and health.get("frontend_listen") is not None:
        return lambda: max(1, host.cpus() // 2)
    return host.cpus


def parse_config(raw: dict, file: str, base: Path | None = None, host: Host | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError with every problem. Relative paths are under `base` if given."""
    host = host if host is not None else this_host()
    reader = Reader(file, base)
    reader.table(raw, "", s.TOP_KEYS)

    server = reader.section(raw, "server", s.SERVER.names)
    fqdn = s.SERVER.value(reader, server, "server", "fqdn", None) or host.fqdn()
    if not valid_domain(fqdn):
        fqdn = "localhost"
    server_name = s.SERVER.value(reader, server, "server", "name", fqdn.split(".")[0].upper() or "EXGATEWAY")
    var_dir = reader.relative(s.SERVER.value(reader, server, "server", "var_dir"))
    workers = s.SERVER.value(reader, server, "server", "workers", parse=workers_parser(_cpus_per_role(raw, host)))
    shutdown_grace = s.SERVER.value(reader, server, "server", "shutdown_grace")
    node_secret_file = var_dir / s.SERVER.value(reader, server, "server", "node_secret_file")

    domains = _read_accepted_domains(reader, raw)
    networks_section = raw["networks"] if isinstance(raw.get("networks"), dict) else {}
    networks, network_problems = parse_networks(reader.section(raw, "networks", set(networks_section)))
    for key, reason in network_problems:
        reader.problem(f"networks.{key}", reason)
    connectors = read_receive_connectors(reader, raw, server_name, fqdn, networks)
    hub_pool = _read_hub_pool(reader, raw, connectors)

    queue = reader.section(raw, "queue", s.QUEUE.names)
    values = s.QUEUE.values(reader, queue, "queue")
    queue_config = QueueConfig(directory=var_dir / values.pop("directory"), **values)
    if queue_config.delay_notification_timeout is not None and queue_config.delay_notification_timeout >= queue_config.message_expiration_timeout:
        reader.problem("queue.delay_notification_timeout", "must be shorter than message_expiration_timeout (or \"off\")")

    mailbox_config = _read_mailbox(reader, raw, var_dir)
    send_connectors = read_send_connectors(reader, raw, fqdn, connectors)

    dns_section = reader.section(raw, "dns", s.DNS.names)
    dns_config = DNSConfig(**s.DNS.values(reader, dns_section, "dns"))
    for i, dns_server in enumerate(dns_config.servers):
        try:
            ipaddress.ip_address(dns_server.host)
        except ValueError:
            reader.problem(f"dns.servers[{i}]", f"{dns_server.host!r}: a DNS server is given by IP address")
    certs = reader.section(raw, "certificates", s.CERTIFICATES.names)
    certificate_dir = var_dir / s.CERTIFICATES.value(reader, certs, "certificates", "directory")
    auth = _read_auth(reader, reader.section(raw, "authentication", s.AUTHENTICATION.names), var_dir)
    recipient_validation = _read_recipient_validation(reader, raw, var_dir, auth, mailbox_config.delivery)

    plog = reader.section(raw, "protocol_log", s.PROTOCOL_LOG.names)
    values = s.PROTOCOL_LOG.values(reader, plog, "protocol_log")
    protocol_log = ProtocolLogConfig(directory=var_dir / values.pop("directory"), **values)
    mt = reader.section(raw, "message_tracking", s.MESSAGE_TRACKING.names)
    values = s.MESSAGE_TRACKING.values(reader, mt, "message_tracking")
    message_tracking = MessageTrackingConfig(directory=var_dir / values.pop("directory"), **values)
    for section, logs in (("protocol_log", protocol_log), ("message_tracking", message_tracking)):
        if logs.max_directory_size < logs.max_file_size:
            reader.problem(f"{section}.max_directory_size", "must be at least max_file_size")

    limits = LimitsConfig(**s.LIMITS.values(reader, reader.section(raw, "limits", s.LIMITS.names), "limits"))

    admin = reader.section(raw, "admin", s.ADMIN.names)
    admin_socket = var_dir / s.ADMIN.value(reader, admin, "admin", "socket")
    if len(str(admin_socket.absolute())) > 100:
        reader.problem("admin.socket", f"{admin_socket.absolute()} is too long for a UNIX socket path (at most 100 characters)")

    health = s.HEALTH.values(reader, reader.section(raw, "health", s.HEALTH.names), "health")

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
        health_listen=health["listen"],
        health_frontend_listen=health["frontend_listen"],
        min_free_space=health["min_free_space"],
        max_memory_percent=health["max_memory_percent"],
        limits=limits,
        rewrite=rewrite,
        dkim=dkim,
        journal_rules=journal_rules,
    )


def _read_accepted_domains(reader: Reader, raw: dict) -> list[AcceptedDomain]:
    T = s.ACCEPTED_DOMAIN
    domains = []
    seen_domains: dict[str, int] = {}
    for i, d in enumerate(reader.array_of_tables(raw, "accepted_domains")):
        where = f"accepted_domains[{i}]"
        reader.table(d, where, T.names)
        if "domain" not in d:
            reader.problem(f"{where}.domain", "required")
            continue
        domain = T.value(reader, d, where, "domain", None)
        if domain is None:
            continue
        if domain in seen_domains:
            reader.problem(f"{where}.domain", f"{domain!r} is already listed at accepted_domains[{seen_domains[domain]}]")
            continue
        seen_domains[domain] = i
        dtype = T.value(reader, d, where, "type")
        domains.append(AcceptedDomain(T.value(reader, d, where, "name", domain), domain, dtype))
    return domains


def _read_hub_pool(reader: Reader, raw: dict, connectors: list[ReceiveConnector]) -> HubPool:
    pool = reader.section(raw, "hub_pool", s.HUB_POOL.names)
    hub_hosts = s.HUB_POOL.value(reader, pool, "hub_pool", "hosts", ())
    if "hosts" not in pool:
        hub_hosts = tuple(
            HostPort("127.0.0.1" if b.host in ("0.0.0.0", "::") else b.host, b.port)
            for c in connectors if c.role == "hub" and c.enabled for b in c.bindings
        )[:1]
    if not hub_hosts and any(c.role == "frontend" and c.enabled for c in connectors):
        reader.problem("hub_pool.hosts", "frontend connectors need at least one hub to hand mail to")
    return HubPool(hosts=hub_hosts, **s.HUB_POOL.values(reader, pool, "hub_pool"))


def _read_mailbox(reader: Reader, raw: dict, var_dir: Path) -> MailboxConfig:
    T = s.MAILBOX
    mailbox = reader.section(raw, "mailbox", T.names)
    delivery = T.value(reader, mailbox, "mailbox", "delivery")
    next_hop = T.value(reader, mailbox, "mailbox", "next_hop")
    if delivery == "smtp" and next_hop is None:
        reader.problem("mailbox.next_hop", "delivery = 'smtp' needs next_hop = 'host:port'")
    maildir = var_dir / T.value(reader, mailbox, "mailbox", "maildir")
    settings = T.values(reader, mailbox, "mailbox", ("protocol_logging_level", "max_mailboxes"))
    security = read_hop_security(reader, mailbox, "mailbox", T, lambda name: var_dir / name, password_file_base=var_dir)
    check_hop_security(reader, "mailbox", security, password_file=True)
    return MailboxConfig(delivery=delivery, maildir=maildir, next_hop=next_hop, **settings, **security.fields())


def _read_auth(reader: Reader, data: dict, var_dir: Path) -> AuthConfig:
    """[authentication] and [authentication.ldap]."""
    w = "authentication"
    backends = s.AUTHENTICATION.value(reader, data, w, "backends")
    ldap = None
    raw_ldap = data.get("ldap")
    if raw_ldap is not None:
        if not isinstance(raw_ldap, dict):
            reader.problem(f"{w}.ldap", "must be a table ([authentication.ldap])")
            raw_ldap = {}
        ldap = _read_ldap(reader, raw_ldap, f"{w}.ldap")
    if "ldap" in backends and ldap is None:
        reader.problem(f"{w}.backends", "\"ldap\" is listed but there is no [authentication.ldap] section")
    values = s.AUTHENTICATION.values(reader, data, w, [k.name for k in s.AUTHENTICATION.keys if k.name != "backends"])
    return AuthConfig(backends=backends, users_file=var_dir / values.pop("users_file"), ldap=ldap, **values)


def _read_ldap(reader: Reader, data: dict, where: str) -> LDAPConfig:
    reader.table(data, where, s.LDAP.names)
    for key in ("url", "base_dn"):
        if key not in data:
            reader.problem(f"{where}.{key}", "required")
    values = s.LDAP.values(reader, data, where)
    ca_file = values.pop("ca_file")
    ldap = LDAPConfig(**values, ca_file=reader.relative(ca_file) if ca_file else None)
    if ldap.start_tls and ldap.host_port[2]:
        reader.problem(f"{where}.start_tls", "ldaps:// is already TLS; start_tls is for ldap:// URLs")
    if bool(ldap.bind_dn) != bool(ldap.bind_password):
        reader.problem(f"{where}.bind_password", "bind_dn and bind_password go together (or leave both out to search anonymously)")
    return ldap


def _read_recipient_validation(reader: Reader, raw: dict, var_dir: Path, auth: AuthConfig, delivery: str) -> RecipientValidationConfig:
    T, w = s.RECIPIENT_VALIDATION, "recipient_validation"
    data = reader.section(raw, w, T.names)
    values = T.values(reader, data, w, defaults={"sources": ("ldap",) if auth.ldap is not None else ()}, names=("sources", "list_file", "cache_ttl"))
    config = RecipientValidationConfig(list_file=var_dir / values.pop("list_file"), **values)
    if "ldap" in config.sources and auth.ldap is None:
        reader.problem("recipient_validation.sources", "\"ldap\" is listed but there is no [authentication.ldap] section")
    if "callout" in config.sources and delivery != "smtp":
        reader.problem("recipient_validation.sources", "\"callout\" asks the mailbox next hop: it needs [mailbox] delivery = \"smtp\"")
    return config


def path_problems(config: Config) -> list[ConfigProblem]:
    """
    Directories the gateway will create or write, checked without touching
    anything: each must exist and be writable, or be creatable under the
    nearest existing parent.
    """
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
