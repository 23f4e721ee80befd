"""
The ESMTP server protocol, on twisted.internet directly: the framing and the
order of replies of one session.

The jobs of a session live in their own modules, each given what it needs
when the connection is made: the commands (commands.py), the message body
(body.py), AUTH (authentication.py) and TLS (starttls.py); metrics and the
protocol log are told through one observer (observer.py). This module
reads the input, hands each command line to its handler, and sends what
the handler produced; every refusal, typed or not, becomes a reply in one
place (`answer`). It does not decide policy itself.

Pipelining: commands are taken one at a time, and while a command's answer is
pending (a hub round trip, a queue fsync) the rest of the input waits in the
buffer, so replies always go out in command order.

Line limits: a command line over 512 octets gets `500 5.5.2 Line too long`
and the session goes on; the excess is discarded up to the next LF, never
buffered. Message content has no line limit (body.py). An AUTH response
line may be up to 12288 octets and never reaches the command parser or any
log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.config import ReceiveConnector
from gateway.connectors import client_address
from gateway.dates import rfc5322
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.fastpath.sendnow import send
from gateway.interfaces import ISession
from gateway.logs.sessionid import new_session_id
from gateway.policy.checks import SessionPolicy
from gateway.policy.limits import DEFAULT_JUNK_COMMAND_LIMIT
from gateway.policy.rights import Principal, Right, connector_rights
from gateway.smtpd.authentication import MAX_AUTH_LINE, SaslAuth
from gateway.smtpd.body import MessageBody
from gateway.smtpd.commands import Commands
from gateway.smtpd.mailstate import MailState
from gateway.smtpd.observer import NullObserver, observer_for
from gateway.smtpd.session import MailHandler, Session
from gateway.smtpd.shutdown import LINGER
from gateway.smtpd.starttls import StartTLS, principal_for
from gateway.startup import key_values

# principal_for: gateway/admin/explain.py asks what a connection would be granted.
__all__ = ["ESMTPServer", "MAX_COMMAND_LINE", "principal_for"]

MAX_COMMAND_LINE = 512
# Input held while an answer is pending; past this the socket is paused.
MAX_PENDING_INPUT = 256 * 1024
# Syntax and sequence errors count toward MaxProtocolErrors; policy refusals
# (a relay denied, a sender refused) do not.
PROTOCOL_ERROR_CODES = frozenset({500, 501, 502, 503, 504, 555})
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "HELP"})
# Each command's handler: (the part of the session that has it, the method). One table for every session.
COMMANDS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "HELO": ("commands", Commands.do_HELO),
    "EHLO": ("commands", Commands.do_EHLO),
    "MAIL": ("commands", Commands.do_MAIL),
    "RCPT": ("commands", Commands.do_RCPT),
    "DATA": ("body", MessageBody.do_DATA),
    "BDAT": ("body", MessageBody.do_BDAT),
    "RSET": ("commands", Commands.do_RSET),
    "NOOP": ("commands", Commands.do_NOOP),
    "VRFY": ("commands", Commands.do_VRFY),
    "HELP": ("commands", Commands.do_HELP),
    "QUIT": ("commands", Commands.do_QUIT),
    "XFORWARD": ("commands", Commands.do_XFORWARD),
    "STARTTLS": ("starttls", StartTLS.do_STARTTLS),
    "AUTH": ("sasl", SaslAuth.do_AUTH),
}

log = Logger(namespace="exgateway.smtpd")


@implementer(IHandshakeListener, ISession)
class ESMTPServer(Protocol):
    """One SMTP session on one receive connector."""

    # ITransport, with TLS and producer methods (typed Any: the zope interfaces do not type-check without a plugin).
    transport: Any
    # Made with the connection (connectionMade): the session and its parts.
    session: Session
    mail: MailState
    body: MessageBody
    sasl: SaslAuth
    starttls: StartTLS
    commands: Commands

    def __init__(
        self, connector: ReceiveConnector, handler: MailHandler, policy: SessionPolicy, clock: Any, limits: Any = None,
        protocol_log: Any = None, tls: Any = None, auth: Any = None, metrics: Any = None, node: Any = None,
        observer: NullObserver | None = None,
    ) -> None:
        # NodeCredential (gateway/auth/node.py): other gateway nodes prove it on ExchangeServer connectors.
        self.node = node
        # Metrics (gateway.admin.metrics.Metrics, if this process exports them) and the protocol log: one observer.
        self.observer: NullObserver = observer if observer is not None else observer_for(connector, metrics, protocol_log)
        # TLSProvider (certificates per connector) and AuthService; None where a tier has neither.
        self.tls = tls
        self.auth = auth
        # ConnectionLimits that counted this connection in (the listener's), if any.
        self._limits = limits
        self.connector = connector
        self.handler = handler
        self.policy = policy
        # IReactorTime: timeouts, the tarpit, the session id's time.
        self.clock = clock
        self._connected = False
        self._in = b""
        self._busy = False
        self._processing = False
        # Replies written but not yet handed to the kernel (flush).
        self._out: list[bytes] = []
        self._discarding = False
        self.closed = False
        self._local_close = False
        self._paused = False
        # IDelayedCall: ConnectionInactivityTimeout and ConnectionTimeout.
        self._timer: Any = None
        self._lifetime: Any = None
        self.protocol_errors = 0
        # NOOP, RSET, VRFY, HELP and unknown commands since the last message (Postfix's junk commands).
        self.junk_commands = 0
        # The process's open sessions (gateway/smtpd/shutdown.py), set by the listener; a stop lets this one finish its message.
        self.sessions: Any = None
        self._stopping = False

    @property
    def limits(self) -> Any:
        return self._limits

    @limits.setter
    def limits(self, limits: Any) -> None:
        """A listener's ConnectionLimits may be swapped after the connection is made (tests do): MAIL counts in the new one."""
        self._limits = limits
        if self._connected:
            self.commands.limits = limits

    @property
    def auth_failures(self) -> int:
        """Failed AUTH attempts in this session."""
        return self.sasl.failures

    # --- connection ---------------------------------------------------

    def connectionMade(self) -> None:
        if self.sessions is not None:
            self.sessions.add(self)
        peer, host = self.transport.getPeer(), self.transport.getHost()
        principal = principal_for(self.connector)
        session = self.session = Session(
            connector=self.connector,
            session_id=new_session_id(self.clock.seconds()),
            client_ip=str(client_address(peer.host)),
            client_port=peer.port,
            server_ip=host.host,
            server_port=host.port,
            principal=principal,
            rights=connector_rights(self.connector, principal),
        )
        self._connected = True
        # Replies go out whole (send_now): Nagle only held one (a BDAT chunk's 250) behind the client's delayed ACK.
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self._make_parts(session)
        self.observer.connected(session, peer.host)
        self._timer = self.clock.callLater(self.connector.connection_inactivity_timeout, self._timed_out)
        self._lifetime = self.clock.callLater(self.connector.connection_timeout, self._too_long)
        if self.connector.implicit_tls and not self.starttls.implicit():
            return
        self.send(SMTPReply(220, "", self._banner()))

    def _make_parts(self, session: Session) -> None:
        """The parts of the session, each with what it needs."""
        c, observer = self.connector, self.observer
        mail = self.mail = MailState()
        self.body = MessageBody(self, session, c, mail, observer, self.auth)
        sasl = self.sasl = SaslAuth(self, session, c, mail, observer, self.clock, self.auth, self.node)
        starttls = self.starttls = StartTLS(self, session, c, observer, self.tls)
        self.commands = Commands(self, session, c, mail, self.handler, self.policy, self.clock, starttls, sasl, self._limits)

    def handshakeCompleted(self) -> None:
        self.starttls.handshake_completed(self.transport.getHandle())

    def _banner(self) -> str:
        template = self.connector.banner or Reply.BANNER_DEFAULT
        template = template.removeprefix("220 ")
        return template.format(
            fqdn=self.connector.fqdn,
            date=rfc5322(self.clock.seconds()),
            connector=self.connector.identity,
            server=self.connector.server_name,
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._limits is not None and self._connected:
            self._limits.release(self.connector, self.session.client_ip)
            self._limits = None
            self.commands.limits = None
        self.closed = True
        for timer in (self._timer, self._lifetime):
            if timer is not None and timer.active():
                timer.cancel()
        if self._connected:
            self.drop_transaction()
            self.observer.closed(self._local_close)
        if self.sessions is not None:
            self.sessions.discard(self)

    def _timed_out(self) -> None:
        self._timer = None
        log.info("timeout {session_id}", session_id=self.session.session_id)
        self.send(Reply.TIMEOUT)
        self.close()

    def _too_long(self) -> None:
        """ConnectionTimeout: the whole session has lasted too long, busy or not."""
        self._lifetime = None
        log.info("connection timeout {session_id}", session_id=self.session.session_id)
        self.send(Reply.CONNECTION_TIMEOUT)
        self.close()

    def close(self) -> None:
        self._local_close = True
        self.closed = True
        self.drop_transaction()
        # The last reply (221, 421) goes out now; the reactor closes the connection after it.
        self.flush()
        self.transport.loseConnection()

    def drop_transaction(self) -> None:
        self.body.reset()
        self.mail.drop()

    def discard_input(self) -> int:
        count, self._in = len(self._in), b""
        return count

    def start_tls(self, options: Any) -> None:
        self.flush()
        self.transport.startTLS(options)

    def send(self, reply: SMTPReply) -> None:
        if not self.connector.enhanced_status_codes_enabled:
            reply = reply.without_enhanced()
        self.observer.reply_sent(reply)
        self._out.append(reply.encode())
        if not self._processing:
            self.flush()

    def flush(self) -> None:
        """
        Send the replies written so far (gateway/fastpath/sendnow.py): after each
        reply outside input processing, and once after the input processed
        at a time, so pipelined commands still get their replies in one
        write; and before a close.
        """
        if self._out:
            out, self._out = self._out, []
            send(self.transport, out[0] if len(out) == 1 else b"".join(out))

    # --- input ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        if self._timer is not None:
            self._timer.reset(self.connector.connection_inactivity_timeout)
        self._in += data
        self._process()
        if self._busy and len(self._in) > MAX_PENDING_INPUT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        body = self.body
        try:
            while not self._busy and not self.closed and (self._in or body.chunk_due):
                if body.in_data:
                    data, self._in = self._in, b""
                    rest = body.take_data(data)
                    if rest is not None:
                        self._in = rest
                        body.end_of_message()
                elif body.in_chunk:
                    chunk, self._in = body.split_chunk(self._in)
                    body.take_chunk(chunk)
                    if body.chunk_due:
                        body.end_chunk()
                elif not self._process_line():
                    break
        finally:
            self._processing = False
        self.flush()
        if self._paused and not self._busy:
            self._paused = False
            self.transport.resumeProducing()

    def _process_line(self) -> bool:
        """Take one command line; False if only part of a line is buffered."""
        sasl = self.sasl
        limit = MAX_AUTH_LINE if sasl.exchanging else MAX_COMMAND_LINE
        newline = self._in.find(b"\n")
        if self._discarding:
            if newline < 0:
                self._in = b""
                return False
            self._in = self._in[newline + 1 :]
            self._discarding = False
            self.answer(Reply.LINE_TOO_LONG)
            return True
        if newline < 0:
            if len(self._in) > limit:
                self._in = b""
                sasl.cancel()
                self._discarding = True
            return False
        line, self._in = self._in[: newline + 1], self._in[newline + 1 :]
        if len(line) > limit:
            sasl.cancel()
            self.answer(Reply.LINE_TOO_LONG)
            return True
        if sasl.exchanging:
            sasl.response_line(line.rstrip(b"\r\n"))
        else:
            self._command(line.rstrip(b"\r\n"))
        return True

    # --- replies ----------------------------------------------------------

    def answer(self, result: Any) -> None:
        """Send what a command produced: a reply, a Deferred of one, or an error."""
        if isinstance(result, Deferred):
            self._busy = True
            result.addCallbacks(self.answer_now, self._answer_failure)
            result.addBoth(self._resume)
            return
        self._hold_if_delayed(self.answer_now(result))

    def _hold_if_delayed(self, delayed: Deferred | None) -> None:
        """A tarpitted reply holds the session, and every command pipelined behind it, until it is sent."""
        if delayed is not None:
            self._busy = True
            delayed.addBoth(self._resume)

    def _tarpit(self) -> float:
        """TarpitInterval: errors to unauthenticated clients are slowed down, as in Exchange."""
        return self.connector.tarpit_interval if self.session.principal is Principal.ANONYMOUS else 0.0

    def answer_now(self, reply: SMTPReply | None, details: dict | None = None) -> Deferred | None:
        """Send a reply; an error to an unauthenticated client waits the tarpit interval first."""
        if reply is None or self.closed:
            return None
        if reply.code >= 400:
            self.observer.refused(reply)
            log.info(
                "refused {session_id}: {code} {enhanced} {text} {details}",
                session_id=self.session.session_id,
                code=reply.code,
                enhanced=reply.enhanced,
                text=reply.text,
                details=key_values(details or {}),
            )
        if reply.code >= 500:
            tarpit = self._tarpit()
            if tarpit > 0:
                return deferLater(self.clock, tarpit, self._deliver, reply)
        self._deliver(reply)
        return None

    def _deliver(self, reply: SMTPReply) -> None:
        if self.closed:
            return
        self.send(reply)
        if reply.code in PROTOCOL_ERROR_CODES:
            self.protocol_errors += 1
            if self.protocol_errors > self.connector.max_protocol_errors:
                log.info("too many protocol errors {session_id}", session_id=self.session.session_id)
                self.send(Reply.TOO_MANY_ERRORS)
                self.close()

    def _answer_failure(self, failure: Failure) -> Deferred | None:
        error = failure.value
        if isinstance(error, SMTPError):
            return self.answer_now(error.reply, error.log_fields)
        log.failure("unexpected error in session {session_id}", failure, session_id=self.session.session_id)
        return self.answer_now(Reply.LOCAL_ERROR)

    def fail(self, failure: Failure) -> None:
        self._hold_if_delayed(self._answer_failure(failure))

    def _resume(self, _: Any = None) -> None:
        self._busy = False
        if not self.closed:
            self._process()
        if self._stopping and not self.closed and self._idle():
            # The message in flight got its reply; its client's next command gets the 421, or it is closed soon anyway.
            self.clock.callLater(LINGER, self._shut_if_idle)

    def run(self, method: Callable[..., Any], *args: Any) -> None:
        try:
            result = method(*args)
        except Exception:
            self.fail(Failure())
            return
        self.answer(result)

    # --- stopping (gateway/smtpd/shutdown.py) -------------------------------

    def _idle(self) -> bool:
        """Between commands: no message body coming in (a BDAT message between its chunks is still coming), no reply being awaited."""
        return not self._busy and not self.body.in_message and not self.body.in_chunk

    def stop_gently(self) -> bool:
        """The process stops: closed now if idle (True), else after the message in flight (False)."""
        self._stopping = True
        if self.closed or self._idle():
            self._shut()
            return True
        return False

    def stop_now(self) -> None:
        """The grace period is over: 421 and close, message or not (without a 250 its client still has it)."""
        self._stopping = True
        self._shut()

    def _shut_if_idle(self) -> None:
        if self._idle():
            self._shut()

    def _shut(self) -> None:
        if self.closed:
            return
        self.send(Reply.SHUTTING_DOWN)
        self.close()

    # --- commands -----------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        try:
            # UTF-8 (ASCII included) for SMTPUTF8 addresses (RFC 6531); parse_path
            # refuses a non-ASCII address outside a SMTPUTF8 transaction.
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.answer(Reply.BAD_SYNTAX)
            return
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        self.observer.command_received(line)
        # The next chunk of a BDAT message in flight is part of it, not a new command.
        if self._stopping and not (verb == "BDAT" and self.body.in_message):
            self._shut()
            return
        route = COMMANDS.get(verb)
        if (route is None or verb in JUNK_COMMANDS) and self._too_much_junk():
            return
        if route is None:
            self.answer(Reply.UNRECOGNIZED)
            return
        part, handler = route
        self.run(handler, getattr(self, part), arg)

    def _too_much_junk(self) -> bool:
        """
        A session that only keeps the line busy (NOOP, RSET, VRFY, HELP,
        unknown commands: each answered at no cost to the client) is closed
        past the limit, as Postfix's smtpd_junk_command_limit does. Other
        gateway nodes (XFORWARD right) reuse their connections without end
        and are not counted.
        """
        self.junk_commands += 1
        limit = self._limits.junk_command_limit if self._limits is not None else DEFAULT_JUNK_COMMAND_LIMIT
        if self.junk_commands <= limit or Right.ACCEPT_XFORWARD in self.session.rights:
            return False
        log.info("too many junk commands {session_id}", session_id=self.session.session_id)
        self.answer_now(Reply.TOO_MANY_ERRORS)
        self.close()
        return True
