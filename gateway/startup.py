"""
What the process log says at start, and what it leaves out.

An admin reading the log after `twistd -n exgateway` wants to know, in a
few lines, which config file and var_dir are in use, which role and how many
workers, and what listens where with which TLS certificate. Twisted's own
chatter (factory and port start/stop lines with object addresses,
resolv.conf parsing, a UDP port per DNS query) says none of that, and with
several workers every line came again per worker: it is filtered out of the
log twistd writes to standard output (`-n`, or `--logfile=-` as in the
systemd unit and for the workers); a log file of twistd's own (`--logfile
FILE`) keeps Twisted's default observer.
"""

from __future__ import annotations

import re
import sys

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    Logger,
    PredicateResult,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import provider

log = Logger(namespace="exgateway")

# Twisted's lines that say nothing to an admin (legacy log.msg text and Logger formats alike).
_CHATTER = re.compile(
    r"^(Starting|Stopping) (factory|protocol) <"
    r"|^\S+ starting on \S+$"
    r"|^\((TCP|UDP|UNIX) Port \S+ Closed\)$"
    r"|^/etc/resolv\.conf changed, reparsing$"
    r"|^Resolver added \("
)
# In a worker other than 0, twistd's own start and stop lines repeat worker 0's.
_WORKER_REPEATS = ("twisted.scripts.", "twisted.internet.base", "twisted.application.")


def chatter(event: dict, worker: int = 0) -> bool:
    """True for an event the process log leaves out."""
    namespace = event.get("log_namespace", "")
    if worker > 0 and namespace.startswith(_WORKER_REPEATS):
        return True
    if event.get("log_level") is not None and event["log_level"].name in ("warn", "error", "critical"):
        return False
    if event.get("log_failure") is not None:
        return False
    if namespace == "exgateway" or namespace.startswith("exgateway."):
        # The gateway's own lines are never chatter: not formatted twice (here, then by the file observer).
        return False
    try:
        text = formatEvent(event)
    except Exception:
        return False
    return bool(_CHATTER.search(text))


def log_observer(twistd_options, worker: int, stream=None):
    """
    The filtered observer for twistd's standard output, or None where twistd
    writes elsewhere (a log file, syslog, an observer of the admin's own).
    """
    if twistd_options is None:
        return None
    get = twistd_options.get if hasattr(twistd_options, "get") else (lambda k, d=None: d)
    logfile = get("logfile")
    to_stdout = logfile == "-" or (get("nodaemon") and not logfile)
    if not to_stdout or get("syslog") or get("logger"):
        return None
    inner = textFileLogObserver(stream or sys.stdout)

    @provider(ILogFilterPredicate)
    def quiet(event) -> PredicateResult:
        return PredicateResult.no if chatter(event, worker) else PredicateResult.maybe

    return FilteringLogObserver(inner, [quiet])


def install_observer(application, observer) -> None:
    """Have twistd log through `observer`: it asks the application for one before it makes its own."""
    if observer is not None and hasattr(application, "setComponent"):
        application.setComponent(ILogObserver, observer)


def key_values(fields: dict) -> str:
    """`key=value key="a value"`: log fields an admin reads (and greps), not a Python dict repr."""
    out = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() or c in '"=' for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(f"{key}={text}")
    return " ".join(out)


def tls_text(connector, tls) -> str:
    """How a connector does TLS, and with which certificate (its thumbprint, as `exgateway certificate list` shows)."""
    if not connector.uses_tls:
        return "no TLS"
    how = "implicit TLS" if connector.implicit_tls else "STARTTLS"
    if tls is None:
        return how
    try:
        _, cert = tls.options_for(connector)
    except Exception as e:  # reported at start by CertificateService; here only described
        return f"{how}, no certificate ({e})"
    return f"{how}, certificate {cert.thumbprint}"


class StartupLines(Service):
    """
    Worker 0 says, once everything listens: the config file, var_dir, role and
    workers; then one line per listener (address, connectors, TLS, certificate).
    Another worker says only that it serves (its admin socket, the last thing it opens, is up).
    """

    def __init__(self, config, role: str, source: str, listeners, tls=None, health=None, worker: int = 0, admin_socket=None) -> None:
        self.worker = worker
        self.admin_socket = admin_socket
        self.config = config
        self.role = role
        self.source = source
        self.listeners = listeners
        self.tls = tls
        self.health = health

    def startService(self) -> None:
        super().startService()
        if self.worker > 0:
            log.info("worker {worker} serving (admin socket {socket})", worker=self.worker, socket=str(self.admin_socket))
            return
        c = self.config
        log.info(
            "exgateway {role} started: config {path} ({source}), var_dir {var_dir}, {workers} worker(s), server {server} ({fqdn})",
            role=self.role, path=str(c.path), source=self.source, var_dir=str(c.var_dir), workers=c.workers,
            server=c.server_name, fqdn=c.fqdn,
        )
        for listener in self.listeners:
            factory = listener.factory
            connectors = "; ".join(f"{k.name} ({tls_text(k, self.tls)})" for k in factory.connectors) or "no connector"
            log.info("listening on {binding} ({role}): {connectors}", binding=str(listener.binding), role=factory.role,
                     connectors=connectors)
        if self.health is not None:
            log.info("listening on {binding}: health (/health/live, /health/ready) and /metrics (HTTP)", binding=str(self.health))


__all__ = ["StartupLines", "chatter", "install_observer", "key_values", "log_observer", "tls_text"]
