"""
AUTH (RFC 4954) in a session: which mechanisms are offered, the exchange,
and what a success or failure does to the session.

The mechanisms themselves are pure state machines (sasl.py, and the node
secret's in gateway/auth/node.py); their response lines never reach the
command parser or any log (the observer is told "****"). The checking is
the AuthService's (gateway/auth/): credential cache, backends, throttle and
lockout. Here a failure is counted and answered after the failure tarpit,
and past max_failures_per_connection the session ends; a success gives the
session its user's rights and ends its tarpit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.auth import node as node_auth
from gateway.auth.identity import DirectoryUnavailable, Identity, LockedOut
from gateway.config import ReceiveConnector
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.policy.rights import Principal, connector_rights
from gateway.smtpd import sasl
from gateway.smtpd.channel import Channel
from gateway.smtpd.mailstate import MailState
from gateway.smtpd.observer import NullObserver
from gateway.smtpd.session import Session

log = Logger(namespace="exgateway.smtpd")

# RFC 4954 allows an AUTH response line of up to 12288 octets.
MAX_AUTH_LINE = 12288


def failure_outcome(failure: Failure) -> tuple[SMTPReply, str, bool]:
    """
    The reply to a failed login, the cause for the log, and whether it counts
    (toward max_failures_per_connection, after the failure tarpit).
    """
    if failure.check(UnauthorizedLogin):
        return Reply.AUTH_FAILED, str(failure.value) or "bad credentials", True
    if failure.check(LockedOut):
        return Reply.AUTH_TEMPFAIL, str(failure.value), True
    if isinstance(failure.value, DirectoryUnavailable):
        # Counted (and tarpitted) when an earlier backend refused the credentials.
        return Reply.AUTH_TEMPFAIL, str(failure.value), bool(failure.value.counted)
    return Reply.AUTH_TEMPFAIL, "internal error", False


class SaslAuth:
    """The AUTH command of one session, and the SASL exchange it starts."""

    __slots__ = ("channel", "session", "connector", "mail", "observer", "clock", "auth", "node", "failures", "_mechanism")

    def __init__(
        self, channel: Channel, session: Session, connector: ReceiveConnector, mail: MailState, observer: NullObserver,
        clock: Any, auth: Any = None, node: Any = None,
    ) -> None:
        self.channel = channel
        self.session = session
        self.connector = connector
        self.mail = mail
        self.observer = observer
        # IReactorTime, for the failure tarpit.
        self.clock = clock
        # AuthService (gateway/auth/service.py); None where the tier has no user logins.
        self.auth = auth
        # NodeCredential (gateway/auth/node.py): other gateway nodes prove it on ExchangeServer connectors.
        self.node = node
        self.failures = 0
        # The mechanism waiting for the client's next response line, if any.
        self._mechanism: Any = None

    @property
    def exchanging(self) -> bool:
        """A 334 is out: the next line is a SASL response, not a command."""
        return self._mechanism is not None

    def cancel(self) -> None:
        """A response line too long: the exchange is over (the framing answers 500)."""
        self._mechanism = None

    def offered(self) -> bool:
        """Users may log in here now: BasicAuth, and TLS first where BasicAuthRequireTLS says so."""
        c = self.connector
        if self.auth is None or not c.basic_auth:
            return False
        return self.session.tls is not None or "BasicAuthRequireTLS" not in c.auth_mechanisms

    def mechanisms(self) -> dict[str, Callable[[], Any]]:
        """The SASL mechanisms offered now: the users' ones where BasicAuth is, the node's where ExchangeServer is."""
        offered: dict[str, Callable[[], Any]] = dict(sasl.MECHANISMS) if self.offered() else {}
        node = self.node
        if node is not None and "ExchangeServer" in self.connector.auth_mechanisms:
            offered[node_auth.MECHANISM] = lambda: node_auth.NodeAuth(node, self.connector.fqdn)
        return offered

    def do_AUTH(self, arg: str) -> Any:
        mechanisms = self.mechanisms()
        if not mechanisms:
            raise SMTPError(Reply.AUTH_UNRECOGNIZED, reason="AUTH not offered here (clear text, or no BasicAuth)")
        if self.session.helo is None:
            raise SMTPError(Reply.NEED_HELO)
        if self.session.identity is not None or self.session.principal is Principal.GATEWAY_NODE:
            raise SMTPError(Reply.AUTH_ALREADY)
        if self.mail.transaction is not None:
            raise SMTPError(Reply.AUTH_IN_TRANSACTION)
        words = arg.split()
        if not 1 <= len(words) <= 2:
            raise SMTPError(Reply.BAD_SYNTAX, reason="AUTH mechanism [initial-response]")
        mechanism = mechanisms.get(words[0].upper())
        if mechanism is None:
            raise SMTPError(Reply.AUTH_UNRECOGNIZED, reason=f"unknown SASL mechanism {words[0]!r}")
        m = mechanism()
        return self._step(m, m.start(words[1] if len(words) == 2 else None))

    def _step(self, mechanism: Any, step: Any) -> Any:
        if isinstance(step, sasl.Credentials):
            return self._authenticate(mechanism.name, step)
        if isinstance(step, node_auth.NodeLogin):
            return self._node_authenticated(step)
        self._mechanism = mechanism
        return SMTPReply(334, "", step)

    def response_line(self, raw: bytes) -> None:
        """The client's answer to a 334 (without its line end)."""
        mechanism, self._mechanism = self._mechanism, None
        self.observer.secret_received()
        self.channel.run(lambda: self._step(mechanism, mechanism.respond(raw.decode("ascii", "replace"))))

    def _authenticate(self, mechanism: str, creds: sasl.Credentials) -> Deferred:
        d = self.auth.authenticate(creds.username, creds.password, self.session.client_ip)
        return d.addCallbacks(self._authenticated, self._failed, (mechanism,), None, (creds.username, mechanism))

    def _node_authenticated(self, login: node_auth.NodeLogin) -> SMTPReply:
        """Another gateway node proved the node secret: the ExchangeServers rights, XFORWARD among them."""
        session = self.session
        session.principal = Principal.GATEWAY_NODE
        session.node = login.node
        session.rights = connector_rights(self.connector, Principal.GATEWAY_NODE)
        self.observer.node_authenticated(session)
        return Reply.AUTH_OK

    def _authenticated(self, identity: Identity, mechanism: str) -> SMTPReply | None:
        if self.channel.closed:
            return None
        session = self.session
        session.identity = identity
        session.auth_mechanism = mechanism
        session.principal = Principal.AUTHENTICATED
        session.rights = connector_rights(self.connector, Principal.AUTHENTICATED)
        self.observer.authenticated(session, mechanism)
        return Reply.AUTH_OK

    def _failed(self, failure: Failure, username: str, mechanism: str = "") -> Any:
        """A failed login: counted, answered after the failure tarpit, and past the limit the session ends."""
        # The metrics' result label.
        outcome = "failure" if failure.check(UnauthorizedLogin) else "locked_out" if failure.check(LockedOut) else "temporary_failure"
        reply, why, count = failure_outcome(failure)
        if not failure.check(UnauthorizedLogin, LockedOut, DirectoryUnavailable):
            log.failure("AUTH failed unexpectedly in {session_id}", failure, session_id=self.session.session_id)
        log.info("auth {session_id} {user} from {client_ip}: {reply} ({why})", session_id=self.session.session_id,
                 user=username, client_ip=self.session.client_ip, reply=str(reply), why=why)
        self.observer.auth_failed(username, mechanism, outcome, why)
        if not count:
            return self._failure_reply(reply)
        self.failures += 1
        return deferLater(self.clock, self.auth.config.failure_tarpit, self._failure_reply, reply)

    def _failure_reply(self, reply: SMTPReply) -> None:
        if self.channel.closed:
            return
        self.channel.send(reply)
        if self.failures >= self.auth.config.max_failures_per_connection:
            log.info("too many AUTH failures {session_id}", session_id=self.session.session_id)
            self.channel.send(Reply.TOO_MANY_ERRORS)
            self.channel.close()
