"""
The ESMTP server protocol, on twisted.internet directly.

It parses commands, keeps the RFC 5321 sequence, and asks the policy and the
tier's MailHandler for every decision. It does not decide policy itself, and
every refusal, typed or not, becomes a reply in one place (`_answer`).

Pipelining: commands are taken one at a time, and while a command's answer is
pending (a hub round trip, a queue fsync) the rest of the input waits in the
buffer, so replies always go out in command order.

Line limits: a command line over 512 octets gets `500 5.5.2 Line too long`
and the session goes on; the excess is discarded up to the next LF, never
buffered. Message content has no line limit (gateway/smtpd/data.py): DATA
is decoded in bulk by DataDecoder, BDAT chunks pass through LineEndings.

TLS (RFC 3207): at STARTTLS every byte already buffered behind the command
is thrown away before the handshake, so nothing a man in the middle
pipelined in clear text runs inside the TLS session (CVE-2011-0411); the
session forgets HELO, transaction and XFORWARD, and STARTTLS is not offered
again. AUTH (RFC 4954) is a small state machine (sasl.py) whose response
lines never reach the command parser or any log.
"""

from __future__ import annotations

import re

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.dates import rfc5322
from gateway.address import parse_path, take_smtputf8
from gateway.config import ReceiveConnector
from gateway.dsnparams import take_mail_dsn, take_rcpt_dsn
from gateway.connectors import client_address
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.headerfirewall import firewalled
from gateway.policy.headerfrom import HeaderFromFixer, header_from_fixed
from gateway.headers import HeaderScan
from gateway.policy.checks import SessionPolicy
from gateway.policy.limits import DEFAULT_JUNK_COMMAND_LIMIT
from gateway.policy.rights import Principal, Right, connector_rights
from gateway.fastpath.sendnow import send
from gateway.smtpd.shutdown import LINGER
from gateway.startup import key_values
from gateway.auth import node as node_auth
from gateway.auth.identity import DirectoryUnavailable, LockedOut
from gateway.smtpd import mailparams, sasl, xtext
from gateway.smtpd.observer import NullObserver, observer_for
from gateway.smtpd.data import DataDecoder, LineEndings
from gateway.smtpd.session import MailFrom, MailHandler, Session, TLSInfo, Transaction, new_session_id
from gateway.tls.store import CertificateError

MAX_COMMAND_LINE = 512
HELP_COMMANDS = "HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"
# Input held while an answer is pending; past this the socket is paused.
MAX_PENDING_INPUT = 256 * 1024
# Syntax and sequence errors count toward MaxProtocolErrors; policy refusals
# (a relay denied, a sender refused) do not.
PROTOCOL_ERROR_CODES = frozenset({500, 501, 502, 503, 504, 555})
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "HELP"})
XFORWARD_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE", "CONNECTOR", "AUTH", "TLS")
# RFC 4954 allows an AUTH response line of up to 12288 octets.
MAX_AUTH_LINE = 12288
_HELO_SAFE = re.compile(r"^[\x21-\x7e]+$")
# C0 and C1 controls, DEL, and Unicode's line and paragraph separators.
_XFORWARD_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

log = Logger(namespace="exgateway.smtpd")


def bare_line_end_reply(check: LineEndings) -> SMTPReply:
    """The 554 5.6.0 that names what the message held: bare LF, bare CR, or both."""
    if check.bare_lf and check.bare_cr:
        return Reply.BARE_LINE_ENDS
    return Reply.BARE_LINEFEED if check.bare_lf else Reply.BARE_CR


def principal_for(connector: ReceiveConnector) -> Principal:
    """Without AUTH, a client is anonymous unless the connector is externally secured."""
    if "ExternalAuthoritative" in connector.auth_mechanisms:
        return Principal.EXTERNALLY_SECURED
    return Principal.ANONYMOUS


@implementer(IHandshakeListener)
class ESMTPServer(Protocol):
    """One SMTP session on one receive connector."""

    def __init__(
        self, connector: ReceiveConnector, handler: MailHandler, policy: SessionPolicy, clock: IReactorTime, limits=None,
        protocol_log=None, tls=None, auth=None, metrics=None, node=None, observer: NullObserver | None = None,
    ) -> None:
        # NodeCredential (gateway/auth/node.py): other gateway nodes prove it on ExchangeServer connectors.
        self.node = node
        # Metrics (gateway.admin.metrics.Metrics, if this process exports them) and the protocol log: one observer.
        self.observer: NullObserver = observer if observer is not None else observer_for(connector, metrics, protocol_log)
        # TLSProvider (certificates per connector) and AuthService; None where a tier has neither.
        self.tls = tls
        self.auth = auth
        self._tls_started = False
        self._tls_cert = None
        self._sasl = None
        self.auth_failures = 0
        # What the header scan of the current message found (frontends): From: and the hop count.
        self._header_from: bytes | None = None
        self._hops = 0
        # ConnectionLimits that counted this connection in (the listener's), if any.
        self.limits = limits
        self.connector = connector
        self.handler = handler
        self.policy = policy
        self.clock = clock
        self.session: Session | None = None
        self._in = b""
        self._busy = False
        self._processing = False
        # Replies written but not yet handed to the kernel (_flush).
        self._out: list[bytes] = []
        self._discarding = False
        self._closed = False
        self._local_close = False
        self._tarpit = 0.0
        self._paused = False
        self._timer = None
        self._lifetime = None
        self._txn: Transaction | None = None
        # The current transaction's MAIL carried SMTPUTF8: its RCPTs may be UTF-8.
        self._smtputf8 = False
        self._rcpt_count = 0
        # The message body in progress: DATA (decoder) or BDAT chunks.
        self._decoder: DataDecoder | None = None
        self._check: LineEndings | None = None
        self._size = 0
        self._overflow = False
        self._headers: HeaderScan | None = None
        self._bdat_left: int | None = None
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_refusal: SMTPReply | None = None
        self.protocol_errors = 0
        # NOOP, RSET, VRFY, HELP and unknown commands since the last message (Postfix's junk commands).
        self.junk_commands = 0
        # The process's open sessions (gateway/smtpd/shutdown.py), set by the listener; a stop lets this one finish its message.
        self.sessions = None
        self._stopping = False

    # --- connection ---------------------------------------------------

    def connectionMade(self) -> None:
        if self.sessions is not None:
            self.sessions.add(self)
        peer, host = self.transport.getPeer(), self.transport.getHost()
        principal = principal_for(self.connector)
        self.session = Session(
            connector=self.connector,
            session_id=new_session_id(self.clock.seconds()),
            client_ip=str(client_address(peer.host)),
            client_port=peer.port,
            server_ip=host.host,
            server_port=host.port,
            principal=principal,
            rights=connector_rights(self.connector, principal),
        )
        # TarpitInterval: errors to unauthenticated clients are slowed down, as in Exchange.
        self._tarpit = self.connector.tarpit_interval if principal is Principal.ANONYMOUS else 0.0
        self.observer.connected(self.session, peer.host)
        self._timer = self.clock.callLater(self.connector.connection_inactivity_timeout, self._timed_out)
        self._lifetime = self.clock.callLater(self.connector.connection_timeout, self._too_long)
        if self.connector.implicit_tls and not self._implicit_tls():
            return
        self._send(SMTPReply(220, "", self._banner()))

    def _implicit_tls(self) -> bool:
        """Port 465 (RFC 8314): TLS from the first byte; the banner goes out inside it."""
        try:
            options, cert = self._tls_options()
        except CertificateError:
            self._close()
            return False
        self._start_tls(options, cert)
        return True

    def _tls_options(self):
        if self.tls is None:
            raise CertificateError("no certificate store on this tier")
        try:
            return self.tls.options_for(self.connector)
        except CertificateError as e:
            log.error("no TLS for {connector}: {error}", connector=self.connector.identity, error=str(e))
            raise

    def _start_tls(self, options, cert) -> None:
        # The 220 that answers STARTTLS leaves in clear text, before the handshake.
        self._flush()
        self._tls_started = True
        self._tls_cert = cert
        self.transport.startTLS(options)

    def handshakeCompleted(self) -> None:
        conn = self.transport.getHandle()
        self.session.tls = TLSInfo(conn.get_protocol_version_name(), conn.get_cipher_name(), self._tls_cert.thumbprint)
        log.info(
            "tls {session_id} {version} {cipher} certificate {thumbprint}", session_id=self.session.session_id,
            version=self.session.tls.version, cipher=self.session.tls.cipher, thumbprint=self.session.tls.thumbprint,
        )
        self.observer.tls_started(self.session, self._tls_cert)

    def _banner(self) -> str:
        template = self.connector.banner or Reply.BANNER_DEFAULT
        if template.startswith("220 "):
            template = template[4:]
        return template.format(
            fqdn=self.connector.fqdn,
            date=rfc5322(self.clock.seconds()),
            connector=self.connector.identity,
            server=self.connector.server_name,
        )

    def connectionLost(self, reason: Failure = None) -> None:
        if self.limits is not None and self.session is not None:
            self.limits.release(self.connector, self.session.client_ip)
            self.limits = None
        self._closed = True
        for timer in (self._timer, self._lifetime):
            if timer is not None and timer.active():
                timer.cancel()
        self._drop_transaction()
        if self.session is not None:
            self.observer.closed(self._local_close)
        if self.sessions is not None:
            self.sessions.discard(self)

    def _timed_out(self) -> None:
        self._timer = None
        log.info("timeout {session_id}", session_id=self.session.session_id)
        self._send(Reply.TIMEOUT)
        self._close()

    def _too_long(self) -> None:
        """ConnectionTimeout: the whole session has lasted too long, busy or not."""
        self._lifetime = None
        log.info("connection timeout {session_id}", session_id=self.session.session_id)
        self._send(Reply.CONNECTION_TIMEOUT)
        self._close()

    def _close(self) -> None:
        self._local_close = True
        self._closed = True
        self._drop_transaction()
        # The last reply (221, 421) goes out now; the reactor closes the connection after it.
        self._flush()
        self.transport.loseConnection()

    def _send(self, reply: SMTPReply) -> None:
        if not self.connector.enhanced_status_codes_enabled:
            reply = reply.without_enhanced()
        self.observer.reply_sent(reply)
        self._out.append(reply.encode())
        if not self._processing:
            self._flush()

    def _flush(self) -> None:
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
        if self._closed:
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
        try:
            while not self._busy and not self._closed and (self._in or self._bdat_left == 0):
                if self._decoder is not None:
                    self._process_data()
                elif self._bdat_left is not None:
                    self._process_chunk()
                elif not self._process_line():
                    break
        finally:
            self._processing = False
        self._flush()
        if self._paused and not self._busy:
            self._paused = False
            self.transport.resumeProducing()

    def _process_line(self) -> bool:
        """Take one command line; False if only part of a line is buffered."""
        limit = MAX_AUTH_LINE if self._sasl is not None else MAX_COMMAND_LINE
        newline = self._in.find(b"\n")
        if self._discarding:
            if newline < 0:
                self._in = b""
                return False
            self._in = self._in[newline + 1 :]
            self._discarding = False
            self._error(Reply.LINE_TOO_LONG)
            return True
        if newline < 0:
            if len(self._in) > limit:
                self._in = b""
                self._sasl = None
                self._discarding = True
            return False
        line, self._in = self._in[: newline + 1], self._in[newline + 1 :]
        if len(line) > limit:
            self._sasl = None
            self._error(Reply.LINE_TOO_LONG)
            return True
        if self._sasl is not None:
            self._sasl_line(line.rstrip(b"\r\n"))
        else:
            self._command(line.rstrip(b"\r\n"))
        return True

    def _process_data(self) -> None:
        chunk, self._in = self._in, b""
        content, rest = self._decoder.feed(chunk)
        if content:
            self._take(content)
        if rest is not None:
            self._in = rest
            self._decoder = None
            self._end_of_message()

    def _process_chunk(self) -> None:
        """BDAT: exactly the announced octets are body, whatever they contain."""
        left = self._bdat_left
        chunk, self._in = self._in[:left], self._in[left:]
        self._bdat_left = left - len(chunk)
        if self._bdat_refusal is None and chunk:
            self._take(self._check.feed(chunk))
        if self._bdat_left:
            return
        self._bdat_left = None
        if self._bdat_refusal is not None:
            refusal, self._bdat_refusal = self._bdat_refusal, None
            self._error(refusal)
        elif self._bdat_last:
            self._take(self._check.end())
            self._end_of_message()
        else:
            self._answer_now(SMTPReply(250, "2.0.0", f"{self._bdat_size} octets received"))

    def _take(self, content: bytes) -> None:
        """Body bytes for the transaction, unless the message is already over size."""
        if not content:
            return
        headers = self._headers
        if headers is not None and not headers.done:
            headers.feed(content)
            if headers.done:
                self._headers_scanned(headers)
        self._size += len(content)
        if self._overflow:
            return
        if self._size > self.connector.max_message_size and Right.BYPASS_MESSAGE_SIZE_LIMIT not in self.session.rights:
            self._overflow = True
            return
        self._txn.write(content)

    # --- replies ----------------------------------------------------------

    def _answer(self, result) -> None:
        """Send what a command produced: a reply, a Deferred of one, or an error."""
        if isinstance(result, Deferred):
            self._busy = True
            result.addCallbacks(self._answer_now, self._answer_failure)
            result.addBoth(self._resume)
            return
        self._hold_if_delayed(self._answer_now(result))

    def _hold_if_delayed(self, delayed: Deferred | None) -> None:
        """A tarpitted reply holds the session, and every command pipelined behind it, until it is sent."""
        if delayed is not None:
            self._busy = True
            delayed.addBoth(self._resume)

    def _answer_now(self, reply: SMTPReply | None, details: dict | None = None) -> Deferred | None:
        """Send a reply; an error to an unauthenticated client waits the tarpit interval first."""
        if reply is None or self._closed:
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
        if reply.code >= 500 and self._tarpit > 0:
            return deferLater(self.clock, self._tarpit, self._deliver, reply)
        self._deliver(reply)
        return None

    def _deliver(self, reply: SMTPReply) -> None:
        if self._closed:
            return
        self._send(reply)
        if reply.code in PROTOCOL_ERROR_CODES:
            self.protocol_errors += 1
            if self.protocol_errors > self.connector.max_protocol_errors:
                log.info("too many protocol errors {session_id}", session_id=self.session.session_id)
                self._send(Reply.TOO_MANY_ERRORS)
                self._close()

    def _answer_failure(self, failure: Failure) -> Deferred | None:
        if failure.check(SMTPError):
            return self._answer_now(failure.value.reply, failure.value.log_fields)
        log.failure("unexpected error in session {session_id}", failure, session_id=self.session.session_id)
        return self._answer_now(Reply.LOCAL_ERROR)

    def _resume(self, _=None) -> None:
        self._busy = False
        if not self._closed:
            self._process()
        if self._stopping and not self._closed and self._idle():
            # The message in flight got its reply; its client's next command gets the 421, or it is closed soon anyway.
            self.clock.callLater(LINGER, self._shut_if_idle)

    # --- stopping (gateway/smtpd/shutdown.py) -------------------------------

    def _idle(self) -> bool:
        """Between commands: no message body coming in, no reply being awaited."""
        return not self._busy and self._decoder is None and self._bdat_left is None

    def stop_gently(self) -> bool:
        """The process stops: closed now if idle (True), else after the message in flight (False)."""
        self._stopping = True
        if self._closed or self._idle():
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
        if self._closed:
            return
        self._send(Reply.SHUTTING_DOWN)
        self._close()

    def _error(self, reply: SMTPReply) -> None:
        self._answer(reply)

    def _run(self, method, *args) -> None:
        try:
            result = method(*args)
        except Exception:
            self._hold_if_delayed(self._answer_failure(Failure()))
            return
        self._answer(result)

    # --- commands -----------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        try:
            # UTF-8 (ASCII included) for SMTPUTF8 addresses (RFC 6531); parse_path
            # refuses a non-ASCII address outside a SMTPUTF8 transaction.
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._error(Reply.BAD_SYNTAX)
            return
        verb, _, arg = line.partition(" ")
        self.observer.command_received(line)
        if self._stopping:
            self._shut()
            return
        handler = self._COMMANDS.get(verb.upper())
        if (handler is None or verb.upper() in JUNK_COMMANDS) and self._too_much_junk():
            return
        if handler is None:
            self._error(Reply.UNRECOGNIZED)
            return
        self._run(handler, self, arg)

    def _too_much_junk(self) -> bool:
        """
        A session that only keeps the line busy (NOOP, RSET, VRFY, HELP,
        unknown commands: each answered at no cost to the client) is closed
        past the limit, as Postfix's smtpd_junk_command_limit does. Other
        gateway nodes (XFORWARD right) reuse their connections without end
        and are not counted.
        """
        self.junk_commands += 1
        limit = self.limits.junk_command_limit if self.limits is not None else DEFAULT_JUNK_COMMAND_LIMIT
        if self.junk_commands <= limit or (self.session is not None and Right.ACCEPT_XFORWARD in self.session.rights):
            return False
        log.info("too many junk commands {session_id}", session_id=self.session.session_id)
        self._answer_now(Reply.TOO_MANY_ERRORS)
        self._close()
        return True

    def do_HELO(self, arg: str) -> SMTPReply:
        return self._hello(arg, esmtp=False)

    def do_EHLO(self, arg: str) -> SMTPReply:
        return self._hello(arg, esmtp=True)

    def _hello(self, arg: str, esmtp: bool) -> SMTPReply:
        arg = arg.strip()
        if not arg or " " in arg or not _HELO_SAFE.match(arg):
            raise SMTPError(Reply.BAD_HELO, helo=arg)
        self._drop_transaction()
        self.session.helo = arg
        self.session.esmtp = esmtp
        self.session.xforward = {}
        greeting = f"{self.connector.fqdn} Hello [{self.session.client_ip}]"
        if not esmtp:
            return SMTPReply(250, "", greeting)
        c = self.connector
        lines = [greeting]
        lines += [f"SIZE {c.max_message_size}"] if c.size_enabled else []
        lines += ["PIPELINING"] if c.pipelining_enabled else []
        lines += ["8BITMIME"] if c.eight_bit_mime_enabled else []
        lines += ["ENHANCEDSTATUSCODES"] if c.enhanced_status_codes_enabled else []
        lines += ["CHUNKING"] if c.chunking_enabled else []
        lines.append("DSN")
        lines.append("SMTPUTF8")
        if c.offers_starttls and not self._tls_started and self.tls is not None:
            lines.append("STARTTLS")
        mechanisms = self._mechanisms()
        if mechanisms and self.session.identity is None and self.session.principal is not Principal.GATEWAY_NODE:
            lines.append("AUTH " + " ".join(mechanisms))
        if Right.ACCEPT_XFORWARD in self.session.rights:
            lines.append("XFORWARD " + " ".join(XFORWARD_ATTRS))
        lines.append("HELP")
        return SMTPReply(250, "", "\n".join(lines))

    def _greeted(self) -> bool:
        """
        HELO/EHLO given. After STARTTLS a client that goes straight to MAIL
        is tolerated, as Postfix does (some devices never repeat EHLO): the
        session has no HELO name then (the one given in clear is not reused).
        """
        return self.session.helo is not None or (self.session.tls is not None and not self.connector.implicit_tls)

    def do_MAIL(self, arg: str):
        if not self._greeted():
            raise SMTPError(Reply.NEED_HELO)
        if self._txn is not None:
            raise SMTPError(Reply.SENDER_ALREADY)
        if arg[:5].upper() != "FROM:":
            raise SMTPError(Reply.BAD_SYNTAX, reason="MAIL without FROM:")
        sender, params = parse_path(arg[5:], sender=True)
        dsn = take_mail_dsn(params)
        smtputf8 = take_smtputf8(params)
        size = body = auth = None
        for key, value in params.items():
            if (key == "SIZE" and not self.connector.size_enabled) or (key == "BODY" and not self.connector.eight_bit_mime_enabled):
                raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter=key)
            if key == "SIZE" and value is not None and value.isdigit():
                size = int(value)
            elif key == "BODY":
                body = mailparams.body_parameter(value)
            elif key == "AUTH":
                auth = mailparams.auth_parameter(value, mailparams.trusts_auth_parameter(self.session))
            elif key == "SIZE":
                raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad SIZE value {value!r}")
            else:
                raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter=key)
        if self.connector.require_tls and self.session.tls is None:
            raise SMTPError(Reply.TLS_REQUIRED, reason="RequireTLS connector, no STARTTLS yet")
        self.policy.check_mail(self.session.rights, sender, size, self.connector.max_message_size, self.session.identity)
        if not self._rate_ok():
            self._answer_now(Reply.RATE_LIMITED)
            self._close()
            return None
        mail = MailFrom(sender, size, body, auth=auth, dsn=dsn, smtputf8=smtputf8)
        self._smtputf8 = smtputf8
        # Exchange's header firewall: organisation headers only from the organisation's servers.
        self._txn = firewalled(self.handler.begin(self.session, mail), self.session.rights, self.connector.max_header_size,
                               self.session.session_id)
        # [authentication] header_from = "authenticated_user": a foreign From: is replaced as it streams, not refused.
        self._txn = header_from_fixed(self._txn, self.session, self.auth, str(sender), self.connector.max_header_size)
        self._rcpt_count = 0
        return Reply.SENDER_OK

    def _rate_ok(self) -> bool:
        """MessageRateLimit, counted per MessageRateSource: the client address, the user, or both."""
        if self.limits is None:
            return True
        source, now = self.connector.message_rate_source, self.clock.seconds()
        if source in ("IPAddress", "All") and not self.limits.message(self.connector, self.session.client_ip, now):
            return False
        identity = self.session.identity
        if source in ("User", "All") and identity is not None:
            return self.limits.message(self.connector, "user:" + identity.account, now)
        return True

    def do_RCPT(self, arg: str):
        if self._txn is None:
            raise SMTPError(Reply.NEED_MAIL)
        if arg[:3].upper() != "TO:":
            raise SMTPError(Reply.BAD_SYNTAX, reason="RCPT without TO:")
        recipient, params = parse_path(arg[3:], sender=False, utf8=self._smtputf8)
        # NOTIFY/ORCPT are taken whether or not DSN was offered: PHPMailer sends them unasked.
        dsn = take_rcpt_dsn(params)
        if params:
            raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter=",".join(params))
        recipient = self.policy.resolve_postmaster(recipient)
        self.policy.check_rcpt(self.session.rights, recipient, self._rcpt_count, self.connector.max_recipients)
        result = self._txn.add_recipient(recipient, dsn)
        if isinstance(result, Deferred):
            return result.addCallback(self._recipient_added)
        return self._recipient_added(result)

    def _recipient_added(self, reply: SMTPReply) -> SMTPReply:
        if reply.positive:
            self._rcpt_count += 1
        return reply

    def do_DATA(self, arg: str):
        if self._txn is None:
            raise SMTPError(Reply.NEED_MAIL)
        if self._rcpt_count == 0:
            raise SMTPError(Reply.NEED_RCPT)
        if arg.strip():
            raise SMTPError(Reply.BAD_SYNTAX, reason="DATA takes no argument")
        if self._check is not None:
            raise SMTPError(Reply.DATA_AFTER_BDAT)
        opened = self._txn.open_body()
        if isinstance(opened, Deferred):
            return opened.addCallback(lambda _: self._start_data())
        return self._start_data()

    def _start_data(self) -> SMTPReply:
        self._decoder = DataDecoder()
        self._start_body(self._decoder.check)
        return Reply.START_DATA

    def _start_body(self, check: LineEndings) -> None:
        self._check = check
        self._size = 0
        self._overflow = False
        # Nothing of the previous message's header may be judged with this one.
        self._header_from = None
        self._hops = 0
        # Frontends check MaxHeaderSize here; a hub's intake scans headers anyway and checks it there.
        self._headers = HeaderScan(self.connector.max_header_size, keep=False) if self.connector.role == "frontend" else None

    def do_BDAT(self, arg: str):
        """RFC 3030 CHUNKING: the chunk's octets are read whatever the verdict, then answered."""
        if not self.connector.chunking_enabled:
            raise SMTPError(Reply.UNRECOGNIZED, reason="CHUNKING disabled on this connector")
        words = arg.split()
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or (len(words) == 2 and words[1].upper() != "LAST"):
            raise SMTPError(Reply.BAD_SYNTAX, reason="BDAT <size> [LAST]")
        self._bdat_left = self._bdat_size = int(words[0])
        self._bdat_last = len(words) == 2
        refusal = None
        if self._txn is None:
            refusal = Reply.NEED_MAIL
        elif self._rcpt_count == 0:
            refusal = Reply.NEED_RCPT
        if refusal is not None:
            self._bdat_refusal = refusal
            return None
        if self._check is not None:
            return None
        self._start_body(LineEndings())
        opened = self._txn.open_body()
        if isinstance(opened, Deferred):
            return opened.addCallbacks(lambda _: None, self._bdat_open_failed)
        return None

    def _bdat_open_failed(self, failure: Failure) -> None:
        self._drop_transaction()
        self._bdat_refusal = failure.value.reply if failure.check(SMTPError) else Reply.LOCAL_ERROR

    def _headers_scanned(self, headers: HeaderScan) -> None:
        self._header_from = headers.from_value
        self._hops = headers.received
        self._headers = None if not headers.too_large else headers

    def _end_of_message(self) -> None:
        check, txn = self._check, self._txn
        self._check = None
        refusal = None
        if self._headers is not None and not self._headers.done:
            # A message that is all header (no blank line, no body): its header ends here.
            self._headers.finish()
            self._headers_scanned(self._headers)
        if check.bare_newline and self.connector.bare_linefeeds == "reject":
            refusal = bare_line_end_reply(check)
        elif self._overflow:
            refusal = Reply.SIZE_EXCEEDED
        elif self._headers is not None and self._headers.too_large:
            refusal = Reply.HEADER_TOO_LARGE
        elif self._hops > self.connector.max_hop_count:
            refusal = Reply.HOP_COUNT_EXCEEDED
        elif not self._header_from_allowed():
            refusal = Reply.SEND_AS_DENIED
        if refusal is not None:
            self._drop_transaction()
            self._error(refusal)
            return
        if check.bare_newline:
            log.info("bare line ends turned into CRLF in a message from {client_ip} ({session_id}): LF {bare_lf}, CR {bare_cr}",
                     client_ip=self.session.client_ip, session_id=self.session.session_id, bare_lf=check.bare_lf, bare_cr=check.bare_cr)
        self._txn = None
        self._rcpt_count = 0
        self.session.xforward = {}
        self.junk_commands = 0
        try:
            result = txn.finish()
        except Exception:
            self._hold_if_delayed(self._answer_failure(Failure()))
            return
        if isinstance(result, Deferred):
            result.addCallback(self._count_accepted)
        self._answer(result)

    def _count_accepted(self, reply):
        if isinstance(reply, SMTPReply) and reply.code == 250:
            self.observer.accepted()
        return reply

    def _header_from_allowed(self) -> bool:
        """With [authentication] check_header_from, the From: header must be one of the user's addresses too."""
        identity = self.session.identity
        if identity is None or self.auth is None or not self.auth.config.check_header_from:
            return True
        if isinstance(self._txn, HeaderFromFixer):
            return True
        if Right.ACCEPT_ANY_SENDER in self.session.rights:
            return True
        from email.utils import getaddresses

        value = (self._header_from or b"").decode("utf-8", "replace")
        addresses = [a for _, a in getaddresses([value]) if a]
        if addresses and all(identity.send_as.allows(a) for a in addresses):
            return True
        log.info("header From {value!r} is not an address {user} may send as", value=value.strip(), user=identity.name)
        return False

    # --- TLS and AUTH ---------------------------------------------------------

    def do_STARTTLS(self, arg: str):
        if self._tls_started:
            raise SMTPError(Reply.TLS_ALREADY)
        if not self.connector.offers_starttls or self.tls is None:
            raise SMTPError(Reply.UNRECOGNIZED, reason="STARTTLS not offered on this connector")
        if arg.strip():
            raise SMTPError(Reply.BAD_SYNTAX, reason="STARTTLS takes no argument")
        if self.session.helo is None:
            raise SMTPError(Reply.NEED_HELO)
        try:
            options, cert = self._tls_options()
        except CertificateError as e:
            raise SMTPError(Reply.TLS_UNAVAILABLE, reason=str(e)) from None
        if self._in:
            # Pipelined behind STARTTLS in clear text: never executed (CVE-2011-0411 class).
            log.warn("discarded {count} bytes sent after STARTTLS before the handshake by {client_ip}",
                     count=len(self._in), client_ip=self.session.client_ip)
            self._in = b""
        self._drop_transaction()
        self._forget_session_state()
        self._send(Reply.STARTTLS_READY)
        self._start_tls(options, cert)
        return None

    def _forget_session_state(self) -> None:
        """
        RFC 3207 4.2: after STARTTLS the client starts over. Whatever it won
        in clear text (HELO, XFORWARD, an AUTH identity and the rights that
        came with it) could have been a man in the middle's doing; only the
        penalties it earned (failure and error counts) are kept.
        """
        session = self.session
        session.helo = None
        session.esmtp = False
        session.xforward = {}
        session.identity = None
        session.auth_mechanism = ""
        session.node = ""
        session.principal = principal_for(self.connector)
        session.rights = connector_rights(self.connector, session.principal)
        self._tarpit = self.connector.tarpit_interval if session.principal is Principal.ANONYMOUS else 0.0

    def _auth_offered(self) -> bool:
        c = self.connector
        if self.auth is None or not c.basic_auth:
            return False
        return self.session.tls is not None or "BasicAuthRequireTLS" not in c.auth_mechanisms

    def _mechanisms(self) -> dict:
        """The SASL mechanisms offered now: the users' ones where BasicAuth is, the node's where ExchangeServer is."""
        offered = dict(sasl.MECHANISMS) if self._auth_offered() else {}
        if self.node is not None and "ExchangeServer" in self.connector.auth_mechanisms:
            offered[node_auth.MECHANISM] = lambda: node_auth.NodeAuth(self.node, self.connector.fqdn)
        return offered

    def do_AUTH(self, arg: str):
        mechanisms = self._mechanisms()
        if not mechanisms:
            raise SMTPError(Reply.AUTH_UNRECOGNIZED, reason="AUTH not offered here (clear text, or no BasicAuth)")
        if self.session.helo is None:
            raise SMTPError(Reply.NEED_HELO)
        if self.session.identity is not None or self.session.principal is Principal.GATEWAY_NODE:
            raise SMTPError(Reply.AUTH_ALREADY)
        if self._txn is not None:
            raise SMTPError(Reply.AUTH_IN_TRANSACTION)
        words = arg.split()
        if not 1 <= len(words) <= 2:
            raise SMTPError(Reply.BAD_SYNTAX, reason="AUTH mechanism [initial-response]")
        mechanism = mechanisms.get(words[0].upper())
        if mechanism is None:
            raise SMTPError(Reply.AUTH_UNRECOGNIZED, reason=f"unknown SASL mechanism {words[0]!r}")
        m = mechanism()
        return self._sasl_step(m, m.start(words[1] if len(words) == 2 else None))

    def _sasl_step(self, mechanism, step):
        if isinstance(step, sasl.Credentials):
            return self._authenticate(mechanism.name, step)
        if isinstance(step, node_auth.NodeLogin):
            return self._node_authenticated(step)
        self._sasl = mechanism
        return SMTPReply(334, "", step)

    def _sasl_line(self, raw: bytes) -> None:
        mechanism, self._sasl = self._sasl, None
        self.observer.secret_received()
        self._run(lambda: self._sasl_step(mechanism, mechanism.respond(raw.decode("ascii", "replace"))))

    def _authenticate(self, mechanism: str, creds: sasl.Credentials) -> Deferred:
        d = self.auth.authenticate(creds.username, creds.password, self.session.client_ip)
        return d.addCallbacks(self._authenticated, self._auth_failed, (mechanism,), None, (creds.username, mechanism))

    def _node_authenticated(self, login) -> SMTPReply:
        """Another gateway node proved the node secret: the ExchangeServers rights, XFORWARD among them."""
        self.session.principal = Principal.GATEWAY_NODE
        self.session.node = login.node
        self.session.rights = connector_rights(self.connector, Principal.GATEWAY_NODE)
        self._tarpit = 0.0
        log.info("auth {session_id} gateway node {node} from {client_ip}: ok", session_id=self.session.session_id,
                 node=login.node, client_ip=self.session.client_ip)
        self.observer.node_authenticated(self.session)
        return Reply.AUTH_OK

    def _authenticated(self, identity, mechanism: str) -> SMTPReply:
        if self._closed:
            return None
        self.session.identity = identity
        self.session.auth_mechanism = mechanism
        self.session.principal = Principal.AUTHENTICATED
        self.session.rights = connector_rights(self.connector, Principal.AUTHENTICATED)
        self._tarpit = 0.0
        log.info("auth {session_id} {user} via {mechanism} from {client_ip}: ok", session_id=self.session.session_id,
                 user=identity.name, mechanism=mechanism, client_ip=self.session.client_ip)
        self.observer.authenticated(self.session, mechanism)
        return Reply.AUTH_OK

    def _auth_failed(self, failure: Failure, username: str, mechanism: str = ""):
        """A failed login: counted, answered after the failure tarpit, and past the limit the session ends."""
        outcome = "failure" if failure.check(UnauthorizedLogin) else "locked_out" if failure.check(LockedOut) else "temporary_failure"
        if failure.check(UnauthorizedLogin):
            reply, why, count = Reply.AUTH_FAILED, str(failure.value) or "bad credentials", True
        elif failure.check(LockedOut):
            reply, why, count = Reply.AUTH_TEMPFAIL, str(failure.value), True
        elif failure.check(DirectoryUnavailable):
            # Counted (and tarpitted) when an earlier backend refused the credentials.
            reply, why, count = Reply.AUTH_TEMPFAIL, str(failure.value), failure.value.counted
        else:
            log.failure("AUTH failed unexpectedly in {session_id}", failure, session_id=self.session.session_id)
            reply, why, count = Reply.AUTH_TEMPFAIL, "internal error", False
        log.info("auth {session_id} {user} from {client_ip}: {reply} ({why})", session_id=self.session.session_id,
                 user=username, client_ip=self.session.client_ip, reply=str(reply), why=why)
        self.observer.auth_failed(username, mechanism, outcome, why)
        if not count:
            return self._auth_failure_reply(reply)
        self.auth_failures += 1
        return deferLater(self.clock, self.auth.config.failure_tarpit, self._auth_failure_reply, reply)

    def _auth_failure_reply(self, reply: SMTPReply) -> None:
        if self._closed:
            return None
        self._send(reply)
        if self.auth_failures >= self.auth.config.max_failures_per_connection:
            log.info("too many AUTH failures {session_id}", session_id=self.session.session_id)
            self._send(Reply.TOO_MANY_ERRORS)
            self._close()
        return None

    def do_RSET(self, arg: str) -> SMTPReply:
        self._drop_transaction()
        self.session.xforward = {}
        return Reply.RESET

    def do_NOOP(self, arg: str) -> SMTPReply:
        return Reply.OK

    def do_VRFY(self, arg: str) -> SMTPReply:
        return Reply.VRFY

    def do_HELP(self, arg: str) -> SMTPReply:
        """The commands this session can use now: STARTTLS and AUTH only where EHLO would offer them."""
        commands = HELP_COMMANDS
        if self.connector.offers_starttls and not self._tls_started and self.tls is not None:
            commands += " STARTTLS"
        if self._auth_offered() and self.session.identity is None:
            commands += " AUTH"
        return Reply.HELP.format(commands=commands)

    def do_QUIT(self, arg: str) -> None:
        self._send(Reply.BYE)
        self._close()

    def do_XFORWARD(self, arg: str) -> SMTPReply:
        if Right.ACCEPT_XFORWARD not in self.session.rights:
            raise SMTPError(Reply.UNRECOGNIZED, reason="XFORWARD without the right")
        if self.session.helo is None:
            raise SMTPError(Reply.NEED_HELO)
        if self._txn is not None:
            raise SMTPError(Reply.XFORWARD_IN_TRANSACTION)
        attrs = {}
        for token in arg.split():
            key, eq, value = token.partition("=")
            key = key.upper()
            if not eq or key not in XFORWARD_ATTRS:
                raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad XFORWARD attribute {token!r}")
            try:
                value = xtext.decode(value)
            except ValueError:
                raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad xtext in {token!r}") from None
            if value in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                continue
            if not value or _XFORWARD_UNSAFE.search(value):
                # These values end up in headers: no control characters, ever.
                # Letters beyond ASCII are kept (a login name "jürgen"), xtext carried them as UTF-8.
                raise SMTPError(Reply.BAD_SYNTAX, reason=f"unsafe XFORWARD {key} value")
            if key == "ADDR":
                value = value[5:] if value.upper().startswith("IPV6:") else value
                try:
                    value = str(client_address(value))
                except ValueError:
                    raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad XFORWARD ADDR {value!r}") from None
            attrs[key] = value
        if not attrs and not arg.strip():
            raise SMTPError(Reply.BAD_SYNTAX, reason="XFORWARD without attributes")
        self.session.xforward.update(attrs)
        return Reply.XFORWARD_OK

    _COMMANDS = {
        "HELO": do_HELO,
        "EHLO": do_EHLO,
        "MAIL": do_MAIL,
        "RCPT": do_RCPT,
        "DATA": do_DATA,
        "BDAT": do_BDAT,
        "RSET": do_RSET,
        "NOOP": do_NOOP,
        "VRFY": do_VRFY,
        "HELP": do_HELP,
        "QUIT": do_QUIT,
        "XFORWARD": do_XFORWARD,
        "STARTTLS": do_STARTTLS,
        "AUTH": do_AUTH,
    }

    def _drop_transaction(self) -> None:
        txn, self._txn = self._txn, None
        self._rcpt_count = 0
        self._decoder = None
        self._check = None
        self._header_from = None
        if txn is not None:
            txn.abort()
