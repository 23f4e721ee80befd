"""
What one SMTP session tells the outside about itself: metrics, the
receive protocol log, the process log's connect line.

The session calls one observer (ISessionEvents) at each event and never
asks whether metrics are exported or the connector logs verbosely:
`observer_for` picks the observers a session needs when it is built, and
NullObserver (every event ignored) is the base of each, so one that cares
for two events says only those two, and the type the session holds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from zope.interface import implementer

from gateway.errors import SMTPReply
from gateway.interfaces import ISessionEvents
from gateway.logs.protocol import SessionLog, endpoint
from gateway.policy.rights import Right

if TYPE_CHECKING:
    from gateway.config import ReceiveConnector
    from gateway.smtpd.session import Session
    from gateway.tls.store import StoredCertificate as Certificate

log = Logger(namespace="exgateway.smtpd")


def _log_right(right: Right) -> str:
    """Exchange's spelling in protocol logs: ms-Exch-SMTP-Accept-Any-Sender -> SMTPAcceptAnySender."""
    return right.value.removeprefix("ms-Exch-").removeprefix("exgw-").replace("-", "")


@lru_cache(maxsize=64)
def rights_line(rights: frozenset[Right]) -> str:
    """The "Set Session Permissions" data: the same few sets for every session, so joined once each."""
    return " ".join(sorted(_log_right(r) for r in rights))


@implementer(ISessionEvents)
class NullObserver:
    """Told everything, does nothing: the default, and the base the others override."""

    def connected(self, session: Session, peer_host: str) -> None:
        pass

    def command_received(self, line: str) -> None:
        pass

    def secret_received(self) -> None:
        pass

    def reply_sent(self, reply: SMTPReply) -> None:
        pass

    def refused(self, reply: SMTPReply) -> None:
        pass

    def tls_started(self, session: Session, cert: Certificate) -> None:
        pass

    def authenticated(self, session: Session, mechanism: str) -> None:
        pass

    def node_authenticated(self, session: Session) -> None:
        pass

    def auth_failed(self, username: str, mechanism: str, outcome: str, why: str) -> None:
        pass

    def accepted(self) -> None:
        pass

    def closed(self, local: bool) -> None:
        pass


class ProcessLogObserver(NullObserver):
    """
    Where the connector keeps no protocol log, the process log says what a
    session did: its connection, its TLS and its login, a line each. Where it
    keeps one, the protocol log says all three (Certificate thumbprint, TLS
    negotiation succeeded, authenticated) and the process log nothing: the
    same two facts again on every submission session, at a log record each
    (issue 22).
    Refused logins are in the process log on every connector
    (gateway/smtpd/authentication.py).
    """

    def connected(self, session: Session, peer_host: str) -> None:
        log.info(
            "connect {session_id} {client_ip}:{client_port} -> {connector} ({server_ip}:{server_port})",
            session_id=session.session_id,
            client_ip=session.client_ip,
            client_port=session.client_port,
            connector=session.connector.identity,
            server_ip=session.server_ip,
            server_port=session.server_port,
        )

    def tls_started(self, session: Session, cert: Certificate) -> None:
        tls = session.tls
        if tls is not None:
            log.info("tls {session_id} {version} {cipher} certificate {thumbprint}", session_id=session.session_id,
                     version=tls.version, cipher=tls.cipher, thumbprint=tls.thumbprint)

    def authenticated(self, session: Session, mechanism: str) -> None:
        if session.identity is not None:
            log.info("auth {session_id} {user} via {mechanism} from {client_ip}: ok", session_id=session.session_id,
                     user=session.identity.name, mechanism=mechanism, client_ip=session.client_ip)

    def node_authenticated(self, session: Session) -> None:
        log.info("auth {session_id} gateway node {node} from {client_ip}: ok", session_id=session.session_id,
                 node=session.node, client_ip=session.client_ip)


# Holds nothing of a session: one for all of them.
PROCESS_LOG = ProcessLogObserver()


class ProtocolLogObserver(NullObserver):
    """
    The connector's receive protocol log (ProtocolLogLevel Verbose): a session
    is in it from its first line ("+", with the connector and both endpoints).
    No secret reaches it: AUTH responses are "****".
    """

    def __init__(self, protocol_log: Any) -> None:
        self.protocol_log = protocol_log
        self._log: SessionLog | None = None

    def connected(self, session: Session, peer_host: str) -> None:
        self._log = SessionLog(
            self.protocol_log, session.connector.identity, session.session_id,
            endpoint(session.server_ip, session.server_port), endpoint(peer_host, session.client_port),
        )
        self._log.event("+")
        self._log.event("*", rights_line(session.rights), "Set Session Permissions")

    def command_received(self, line: str) -> None:
        if self._log is None:
            return
        verb, _, arg = line.partition(" ")
        words = arg.split()
        # An AUTH initial response carries the password: never logged.
        self._log.event("<", f"{verb} {words[0]} ****" if verb.upper() == "AUTH" and len(words) > 1 else line)

    def secret_received(self) -> None:
        if self._log is not None:
            self._log.event("<", "****")

    def reply_sent(self, reply: SMTPReply) -> None:
        if self._log is not None:
            self._log.events(">", reply.lines())

    def tls_started(self, session: Session, cert: Certificate) -> None:
        if self._log is None or session.tls is None:
            return
        self._log.event("*", cert.subject, "Certificate subject")
        self._log.event("*", cert.thumbprint, "Certificate thumbprint")
        self._log.event("*", f"{session.tls.version} {session.tls.cipher}", "TLS negotiation succeeded")

    def authenticated(self, session: Session, mechanism: str) -> None:
        if self._log is not None and session.identity is not None:
            self._log.event("*", session.identity.name, "authenticated")
            self._log.event("*", rights_line(session.rights), "Set Session Permissions")

    def node_authenticated(self, session: Session) -> None:
        if self._log is not None:
            self._log.event("*", f"gateway node {session.node}", "authenticated")
            self._log.event("*", rights_line(session.rights), "Set Session Permissions")

    def auth_failed(self, username: str, mechanism: str, outcome: str, why: str) -> None:
        # The cause is the admin's to read (the client gets only 535 or 454): wrong password, outside the
        # user's networks, locked out, directory down.
        if self._log is not None:
            self._log.event("*", username, f"authentication failed: {why}")

    def closed(self, local: bool) -> None:
        if self._log is not None:
            self._log.event("-", "", "Local" if local else "Remote")
            self._log = None


class MetricsObserver(NullObserver):
    """The process's Prometheus counters (gateway/admin/metrics.py), by connector."""

    def __init__(self, metrics: Any, connector_name: str) -> None:
        self.metrics = metrics
        self.connector_name = connector_name
        self._counts = metrics.for_connector(connector_name)

    def connected(self, session: Session, peer_host: str) -> None:
        self._counts.connections.inc()
        self._counts.sessions.inc()

    def refused(self, reply: SMTPReply) -> None:
        self.metrics.rejected.labels(self.connector_name, str(reply.code)).inc()

    def authenticated(self, session: Session, mechanism: str) -> None:
        self.metrics.auth.labels(mechanism, "success").inc()

    def auth_failed(self, username: str, mechanism: str, outcome: str, why: str) -> None:
        self.metrics.auth.labels(mechanism, outcome).inc()

    def accepted(self) -> None:
        self._counts.accepted.inc()

    def closed(self, local: bool) -> None:
        self._counts.sessions.dec()


class Observers(NullObserver):
    """Several observers told of each event, in order."""

    def __init__(self, *observers: NullObserver) -> None:
        self.observers = observers

    def connected(self, session: Session, peer_host: str) -> None:
        for o in self.observers:
            o.connected(session, peer_host)

    def command_received(self, line: str) -> None:
        for o in self.observers:
            o.command_received(line)

    def secret_received(self) -> None:
        for o in self.observers:
            o.secret_received()

    def reply_sent(self, reply: SMTPReply) -> None:
        for o in self.observers:
            o.reply_sent(reply)

    def refused(self, reply: SMTPReply) -> None:
        for o in self.observers:
            o.refused(reply)

    def tls_started(self, session: Session, cert: Certificate) -> None:
        for o in self.observers:
            o.tls_started(session, cert)

    def authenticated(self, session: Session, mechanism: str) -> None:
        for o in self.observers:
            o.authenticated(session, mechanism)

    def node_authenticated(self, session: Session) -> None:
        for o in self.observers:
            o.node_authenticated(session)

    def auth_failed(self, username: str, mechanism: str, outcome: str, why: str) -> None:
        for o in self.observers:
            o.auth_failed(username, mechanism, outcome, why)

    def accepted(self) -> None:
        for o in self.observers:
            o.accepted()

    def closed(self, local: bool) -> None:
        for o in self.observers:
            o.closed(local)


def observer_for(connector: ReceiveConnector, metrics: Any = None, protocol_log: Any = None) -> NullObserver:
    """
    The observer of one session on `connector`: its protocol log if the
    connector logs verbosely (else the process log's connect line), and the
    metrics if this process exports them.
    """
    logs: NullObserver
    if protocol_log is not None and connector.protocol_logging_level == "Verbose":
        logs = ProtocolLogObserver(protocol_log)
    else:
        logs = PROCESS_LOG
    if metrics is None:
        return logs
    return Observers(logs, MetricsObserver(metrics, connector.name))
