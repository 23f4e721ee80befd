"""
The outbound ESMTP client: used for the frontend's hand-off to the hub and
for delivery to a next hop.

Written here rather than on twisted.mail's client: commands are pipelined
when the server offers PIPELINING, replies are matched to commands in order,
one connection carries many transactions, and the body is streamed from a
file with dot-stuffing that keeps state across chunks (a line starting with a
dot is stuffed even when a read splits it from its CRLF).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections import deque
from typing import BinaryIO

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionLost, TimeoutError
from twisted.internet.interfaces import IHandshakeListener, IPullProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.auth import node as node_auth
from gateway.config.values import HostPort
from gateway.deliver.opportunistic import OpportunisticTLSFailed
from gateway.deliver.timeouts import PhaseTimeouts
from gateway.errors import SMTPReply
from gateway.logs.protocol import SessionLog, endpoint
from gateway.deliver.oauth import TokenError
from gateway.deliver.saslclient import OAuthLogin
from gateway.logs.sendlog import masked_auth, tls_events
from gateway.fastpath.sendnow import send_now
from gateway.smtpd.session import new_session_id
from gateway.smtpd.data import dot_stuff

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3}) ")
MAX_REPLY_LINE = 4096
# One reply from a next hop (or a hub) may be this long at most: a server
# streaming `220-` lines must not grow the process without bound. Postfix
# stops at `line_length_limit` per line; a whole reply has no RFC limit, and
# real ones (EHLO's keyword list, an NDR text) stay far below these.
MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 64 * 1024
BODY_CHUNK = 64 * 1024
# Bodies up to this size are written in one go, without a producer.
SMALL_BODY = 256 * 1024

log = Logger(namespace="exgateway.deliver")


class SMTPClientError(Exception):
    """The server answered something the client could not go on from."""

    def __init__(self, reply: SMTPReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class LoginUnavailable(SMTPClientError):
    """
    The next hop is up, but this connector cannot log in to it (no OAuth
    token, or the token refused twice). Not the address's fault: it is not
    marked bad, no other address is tried with the same credential, and the
    reply (with the decoded reason) becomes the recipients' LastError as is.
    """


class ReplyTooLong(ConnectionLost):
    """
    The server's reply passed MAX_REPLY_LINES or MAX_REPLY_BYTES: the
    connection is dropped, the attempt deferred and the address marked bad.
    A ConnectionLost, so every caller that copes with a broken connection
    (retry elsewhere, defer) copes with this one.
    """


def parse_reply(lines: list[bytes]) -> SMTPReply:
    code = int(lines[0][:3])
    texts = []
    enhanced = ""
    for raw in lines:
        text = raw[4:].decode("utf-8", "replace")
        m = _ENHANCED.match(text)
        if m:
            enhanced = enhanced or m.group(1)
            text = text[m.end() :]
        texts.append(text)
    return SMTPReply(code, enhanced, "\n".join(texts))


class _ReplyGroup:
    """
    Stands in the reply queue for each command of a pipelined group: one
    Deferred for the group, fired with every reply in order (or with the
    first failure), rather than a Deferred per command gathered again.
    """

    __slots__ = ("deferred", "replies", "left")

    def __init__(self, count: int) -> None:
        self.deferred: Deferred = Deferred()
        self.replies: list[SMTPReply] = []
        self.left = count

    def callback(self, reply: SMTPReply) -> None:
        self.replies.append(reply)
        self.left -= 1
        if self.left == 0:
            self.deferred.callback(self.replies)

    def errback(self, failure: Failure) -> None:
        if not self.deferred.called:
            self.deferred.errback(failure)


@implementer(IPullProducer)
class _BodyProducer:
    """Reads a file in chunks as the transport drains, dot-stuffing each (for DATA) or not (BDAT)."""

    def __init__(self, client: "SMTPClient", body: BinaryIO, done: Deferred, stuff: bool = True) -> None:
        self.client = client
        self.body = body
        self.done = done
        self.write = client._write_body if stuff else client.transport.write

    def resumeProducing(self) -> None:
        self.client.progressed()
        chunk = self.body.read(BODY_CHUNK)
        if chunk:
            self.write(chunk)
            return
        self.client.transport.unregisterProducer()
        self.client.progressed(ended=True)
        self.done.callback(None)

    def stopProducing(self) -> None:
        if not self.done.called:
            self.done.errback(ConnectionLost("body transfer stopped"))


@implementer(IHandshakeListener)
class SMTPClient(Protocol):
    """One SMTP connection; `ready` fires with the client after EHLO."""

    def __init__(
        self, helo_name: str, clock: IReactorTime, timeout: float = 300.0, protocol_log=None, connector_id: str = "",
        security=None, peer_name: str = "", timeouts: PhaseTimeouts | None = None,
    ) -> None:
        # How long each reply may take, by phase (greeting, MAIL, RCPT, DATA, end of data...).
        self.timeouts = timeouts or PhaseTimeouts.uniform(timeout)
        # The wait for each reply in _waiting, in the same order.
        self._limits: deque[float] = deque()
        # A body being streamed: the peer must take some of it within timeouts.data_xfer.
        self._xfer = None
        # OutboundSecurity (STARTTLS and AUTH policy) and the name the next hop is known by.
        self.security = security
        self.peer_name = peer_name
        self.tls_active = False
        # Between STARTTLS and the first reply inside TLS: a failure here is the handshake's.
        self.tls_pending = False
        self.authenticated = False
        self.node_authenticated = False
        self.messages = 0
        self.address: HostPort | None = None
        # A send protocol log (Exchange's SMTP Send Protocol Log) for this connection, if any.
        self.protocol_log = protocol_log
        self.connector_id = connector_id
        self._plog = None
        self.helo_name = helo_name
        self.clock = clock
        self.timeout = timeout
        self.ready: Deferred = Deferred()
        self.extensions: dict[str, str] = {}
        self.connected = False
        self._lines: list[bytes] = []
        # Bytes of the reply in progress (self._lines), for MAX_REPLY_BYTES.
        self._reply_bytes = 0
        self._buffer = b""
        # Written but not yet handed to the kernel (flush).
        self._unsent = False
        self._waiting: deque[Deferred] = deque()
        self._timer = None
        self._context = b"\r\n"

    # --- wire -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        peer = self.transport.getPeer()
        # Which address this connection reached, for marking it down (AddressHealth).
        self.address = HostPort(peer.host, peer.port) if hasattr(peer, "port") else None
        if self.protocol_log is not None:
            host, peer = self.transport.getHost(), self.transport.getPeer()
            self._plog = SessionLog(
                self.protocol_log, self.connector_id, new_session_id(self.clock.seconds()),
                endpoint(host.host, host.port), endpoint(peer.host, peer.port),
            )
            self._plog.event("+")
        greeting = self._expect(self.timeouts.greeting)
        greeting.addCallback(self._greeted)
        greeting.addErrback(self._not_ready)

    def handshakeCompleted(self) -> None:
        """STARTTLS done: the protocol log says with what, and which certificate the next hop showed."""
        if self._plog is not None:
            for data, context in tls_events(self.transport.getHandle()):
                self._plog.event("*", data, context)

    def _greeted(self, reply: SMTPReply):
        if reply.code != 220:
            raise SMTPClientError(reply)
        return self.command(f"EHLO {self.helo_name}").addCallback(self._ehlo_done)

    def _ehlo_done(self, reply: SMTPReply):
        # A reply inside TLS: the handshake worked.
        self.tls_pending = False
        if reply.code != 250:
            if self.security is not None and self.security.tls == "required":
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"TLS required, but {self.peer_name} does not speak ESMTP"))
            # HELO offers no extensions, whatever an earlier EHLO (before STARTTLS) said.
            self.extensions = {}
            return self.command(f"HELO {self.helo_name}").addCallback(self._helo_done)
        self.extensions = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params
        security = self.security
        if security is not None and not self.tls_active and security.tls != "none":
            if "STARTTLS" in self.extensions:
                return self.command("STARTTLS").addCallback(self._starttls)
            if security.tls == "required":
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"TLS required, but {self.peer_name} does not offer STARTTLS"))
        if security is not None and security.node is not None and not self.node_authenticated and node_auth.offered(self.extensions):
            return self._node_authenticate(security.node)
        if security is not None and security.auth != "None" and not self.authenticated:
            return self._authenticate()
        self.ready.callback(self)

    def _node_authenticate(self, node) -> Deferred:
        """A hub that asks gateway nodes to prove the node secret (gateway/auth/node.py): answer its challenge."""
        d = self.command("AUTH " + node_auth.MECHANISM)

        def challenged(reply: SMTPReply):
            if reply.code != 334:
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} refused node authentication: {reply}"))
            try:
                challenge = base64.b64decode(reply.text.strip(), validate=True).decode("utf-8")
            except ValueError:
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} sent a garbled node challenge")) from None
            return self._secret_command(base64.b64encode(node.proof(challenge).encode()).decode(), "****")

        def answered(reply: SMTPReply):
            if reply.code != 235:
                raise SMTPClientError(SMTPReply(
                    451, "4.7.5", f"{self.peer_name} refused this node's credential ({reply}): every node needs the same {node.path}",
                ))
            self.node_authenticated = True
            # Again, for what the hub grants a node (XFORWARD).
            return self.command(f"EHLO {self.helo_name}").addCallback(self._ehlo_done)

        return d.addCallback(challenged).addCallback(answered)

    def _starttls(self, reply: SMTPReply):
        if reply.code != 220:
            if self.security.tls == "required":
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"TLS required, but {self.peer_name} refused STARTTLS: {reply}"))
            return self._after_tls_refused()
        if self._buffer or self._lines:
            # Replies that came behind the 220 in clear text, before any
            # handshake, are a man in the middle's (the CVE-2011-0411 class,
            # from the server's side): they would answer the EHLO and MAIL
            # sent inside TLS. The server side throws such bytes away; here
            # the whole connection is refused, so nothing read in clear can
            # be mistaken for a reply, and the message waits for a clean one.
            count = len(self._buffer) + sum(len(line) + 2 for line in self._lines)
            self._buffer, self._lines, self._reply_bytes = b"", [], 0
            raise SMTPClientError(SMTPReply(
                451, "4.7.5", f"TLS negotiation with {self.peer_name} failed: {count} bytes came after the 220 to STARTTLS, before the handshake",
            ))
        self.transport.startTLS(self.security.tls_options(self.peer_name))
        self.tls_active = True
        self.tls_pending = True
        return self.command(f"EHLO {self.helo_name}").addCallback(self._ehlo_done)

    def _after_tls_refused(self):
        """Opportunistic TLS that the server refused: go on in clear, as without STARTTLS."""
        if self.security.auth != "None" and not self.authenticated:
            return self._authenticate()
        self.ready.callback(self)

    def _authenticate(self):
        security = self.security
        if security.tokens is not None:
            return self._authenticate_oauth(security)
        if not self.tls_active and security.auth == "BasicAuthRequireTLS":
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"smart host AUTH needs TLS, and the session with {self.peer_name} has none"))
        line = security.auth_line(self.extensions.get("AUTH", ""))
        if line is None:
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} offers no AUTH PLAIN or LOGIN"))
        d = self._secret_command(line, masked_auth(line))
        if line == "AUTH LOGIN":
            d.addCallback(self._login_step, security.username)
            d.addCallback(self._login_step, security.password)
        return d.addCallback(self._auth_done)

    def _authenticate_oauth(self, security):
        """XOAUTH2 / OAUTHBEARER with the connector's token (gateway/deliver/saslclient.py): only inside TLS."""
        if not self.tls_active:
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"{security.auth} needs TLS, and the session with {self.peer_name} has none"))
        if security.auth not in self.extensions.get("AUTH", "").upper().split():
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} does not offer AUTH {security.auth}"))
        port = self.address.port if self.address is not None else 0
        d = OAuthLogin(self._secret_command, security.tokens, security.auth, security.username, self.peer_name, port).run()
        d.addErrback(self._no_token)
        return d.addCallback(self._oauth_done)

    def _no_token(self, failure: Failure):
        failure.trap(TokenError)
        raise LoginUnavailable(SMTPReply(451, "4.7.5", f"no OAuth token for {self.peer_name}: {failure.getErrorMessage()}"))

    def _oauth_done(self, reply: SMTPReply):
        if reply.code != 235:
            raise LoginUnavailable(SMTPReply(451, "4.7.5", f"smart host AUTH refused by {self.peer_name}: {reply}"))
        self.authenticated = True
        self.ready.callback(self)

    def _secret_command(self, line: str, shown: str) -> Deferred:
        """A command carrying credentials: sent as is, written to the protocol log as `shown` (masked)."""
        d = self._expect(self.timeouts.helo)
        if self.connected:
            if self._plog is not None:
                self._plog.event(">", shown)
            self._write(line.encode("utf-8") + b"\r\n")
        return d

    def _login_step(self, reply: SMTPReply, value: str) -> Deferred:
        if reply.code != 334:
            return succeed(reply)
        return self._secret_command(base64.b64encode(value.encode()).decode(), "****")

    def _auth_done(self, reply: SMTPReply):
        if reply.code != 235:
            # Wrong credentials are the admin's to fix: defer (4xx) rather than bounce the mail.
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"smart host AUTH refused by {self.peer_name}: {reply}"))
        self.authenticated = True
        self.ready.callback(self)

    def _helo_done(self, reply: SMTPReply):
        if reply.code != 250:
            raise SMTPClientError(reply)
        self.ready.callback(self)

    def _not_ready(self, failure: Failure) -> None:
        if self.tls_pending and self.security.tls == "opportunistic" and not failure.check(SMTPClientError):
            failure = Failure(OpportunisticTLSFailed(f"TLS with {self.peer_name} failed: {failure.getErrorMessage()}"))
        if not self.ready.called:
            self.ready.errback(failure)
        self.abort()

    def dataReceived(self, data: bytes) -> None:
        self._read_replies(data)
        # What the replies' callbacks wrote (the next commands, a body) leaves now.
        self.flush()

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self._unsent = True

    def flush(self) -> None:
        """Send what was written since the last flush (gateway/fastpath/sendnow.py): after writing a pipelined group outside dataReceived."""
        if self._unsent:
            self._unsent = False
            send_now(self.transport)

    def _read_replies(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    self._reply_too_long(f"a reply line of more than {MAX_REPLY_LINE} bytes")
                return
            line, self._buffer = self._buffer[:end].rstrip(b"\r"), self._buffer[end + 1 :]
            if len(line) < 3 or not line[:3].isdigit():
                self.abort()
                return
            self._lines.append(line)
            self._reply_bytes += len(line)
            if len(self._lines) > MAX_REPLY_LINES or self._reply_bytes > MAX_REPLY_BYTES:
                self._reply_too_long(
                    f"a reply of more than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes "
                    f"({len(self._lines)} lines, {self._reply_bytes} bytes so far)"
                )
                return
            if line[3:4] != b"-":
                lines, self._lines, self._reply_bytes = self._lines, [], 0
                self._reply(parse_reply(lines))

    def _reply_too_long(self, what: str) -> None:
        """Drop a connection whose server will not end its reply; whoever waits learns why."""
        self._buffer, self._lines, self._reply_bytes = b"", [], 0
        reason = f"{self.peer_name or 'the server'} sent {what}: connection dropped"
        self._fail_all(Failure(ReplyTooLong(reason)))
        self.abort()

    def _reply(self, reply: SMTPReply) -> None:
        if self._plog is not None:
            for line in reply.lines():
                self._plog.event("<", line)
        if not self._waiting:
            # Unsolicited (e.g. a 421 before closing): nothing waits for it.
            return
        d = self._waiting.popleft()
        self._limits.popleft()
        self._arm()
        d.callback(reply)

    def _arm(self) -> None:
        """One timer per connection, pushed back on each reply (cheaper than a new one)."""
        active = self._timer is not None and self._timer.active()
        if not self._waiting:
            if active:
                self._timer.cancel()
            self._timer = None
        elif active:
            self._timer.reset(self._limits[0])
        else:
            self._timer = self.clock.callLater(self._limits[0], self._timed_out)

    def progressed(self, ended: bool = False) -> None:
        """The body producer ran (the peer took data) or finished: push back, or end, the transfer timer."""
        if ended and self._waiting:
            # BDAT's reply was awaited from the start of the transfer: its wait starts now, at the end of the body.
            self._arm()
        if self._xfer is not None and self._xfer.active():
            if ended:
                self._xfer.cancel()
            else:
                self._xfer.reset(self.timeouts.data_xfer)
        elif not ended:
            self._xfer = self.clock.callLater(self.timeouts.data_xfer, self._timed_out)

    def _timed_out(self) -> None:
        if self._xfer is not None and self._xfer.active():
            self._xfer.cancel()
        self._timer = None
        self._fail_all(Failure(TimeoutError("no reply from server")))
        self.abort()

    def connectionLost(self, reason: Failure = None) -> None:
        self.connected = False
        if self._plog is not None:
            self._plog.event("-")
            self._plog = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._xfer is not None and self._xfer.active():
            self._xfer.cancel()
        self._fail_all(reason or Failure(ConnectionLost()))
        if not self.ready.called:
            self.ready.errback(reason)

    def _fail_all(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting, deque()
        self._limits.clear()
        for d in waiting:
            d.errback(failure)

    def abort(self) -> None:
        if self.transport is not None and self.connected:
            self.transport.abortConnection()

    # --- commands -----------------------------------------------------------

    def _expect(self, seconds: float | None = None) -> Deferred:
        """A Deferred for the next reply, awaited `seconds` (timeouts.other); failed at once if the connection is gone."""
        if not self.connected:
            return fail(ConnectionLost("not connected"))
        d: Deferred = Deferred()
        self._waiting.append(d)
        self._limits.append(self.timeouts.other if seconds is None else seconds)
        if len(self._waiting) == 1:
            self._arm()
        return d

    def command(self, line: str) -> Deferred:
        """Send one command line; fires with its reply. Callers pipeline only
        where the server offers PIPELINING (see `pipelining`)."""
        d = self._expect(self.timeouts.for_command(line))
        if self.connected:
            if self._plog is not None:
                self._plog.event(">", line)
            self._write(line.encode("utf-8") + b"\r\n")
        return d

    def commands(self, lines: list[str]) -> Deferred:
        """
        Send a pipelined group (where the server offers PIPELINING): every
        line in one write, after `flush`. Fires with the replies in order,
        or with the first failure (a lost connection, a timeout).
        """
        if not self.connected:
            return fail(ConnectionLost("not connected"))
        group = _ReplyGroup(len(lines))
        arm = not self._waiting
        for line in lines:
            if self._plog is not None:
                self._plog.event(">", line)
            self._waiting.append(group)
            self._limits.append(self.timeouts.for_command(line))
        if arm:
            self._arm()
        self._write("".join([line + "\r\n" for line in lines]).encode("utf-8"))
        return group.deferred

    @property
    def busy(self) -> bool:
        """True while a command still waits for its reply."""
        return bool(self._waiting)

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    def send_body(self, body: BinaryIO, size: int) -> Deferred:
        """After a 354: stream the body, end it, fire with the final reply."""
        self._context = b"\r\n"
        sent: Deferred = Deferred()
        if size <= SMALL_BODY:
            self._write_body(body.read())
            sent.callback(None)
        else:
            self.transport.registerProducer(_BodyProducer(self, body, sent), False)
        return sent.addCallback(self._end_body)

    def send_bdat(self, body: BinaryIO, size: int) -> Deferred:
        """
        CHUNKING (RFC 3030): the whole body as one `BDAT <size> LAST`, sent
        as is, without waiting for a 354 and without dot-stuffing; fires
        with the final reply. Only where the server offers CHUNKING.
        """
        d = self._expect(self.timeouts.data_done)
        if not self.connected:
            return d
        if self._plog is not None:
            self._plog.event(">", f"BDAT {size} LAST")
        self._write(b"BDAT %d LAST\r\n" % size)
        if size <= SMALL_BODY:
            self._write(body.read())
        else:
            # The reply Deferred is already waiting; the producer only streams.
            self.transport.registerProducer(_BodyProducer(self, body, Deferred(), stuff=False), False)
        return d

    def _write_body(self, chunk: bytes) -> None:
        stuffed, self._context = dot_stuff(chunk, self._context)
        self._write(stuffed)

    def _end_body(self, _) -> Deferred:
        ending = b".\r\n" if self._context == b"\r\n" else b"\r\n.\r\n"
        d = self._expect(self.timeouts.data_done)
        if self.connected:
            self._write(ending)
        return d

    def quit(self) -> None:
        if self.connected:
            self.command("QUIT").addErrback(lambda _: None)
            self.transport.loseConnection()


class _OneClient(Factory):
    """Hands out one prepared client; quiet, since it runs once per connection."""

    noisy = False

    def __init__(self, client: SMTPClient) -> None:
        self.client = client

    def buildProtocol(self, addr) -> SMTPClient:
        return self.client


def endpoint_for(reactor, host: str, port: int, connect_timeout: float):
    """A plain TCP endpoint for an IP address; HostnameEndpoint (all A/AAAA) for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=connect_timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=connect_timeout)


def connect(
    reactor, host: str, port: int, helo_name: str, connect_timeout: float, timeout: float = 300.0, protocol_log=None, connector_id: str = "",
    security=None, peer_name: str = "", timeouts: PhaseTimeouts | None = None,
) -> Deferred:
    """
    Connect, greet (and STARTTLS and AUTH as `security` says); fires with a
    ready SMTPClient. An opportunistic STARTTLS whose handshake fails is
    followed at once by a second connection to the same address in clear
    (gateway/deliver/opportunistic.py); "required" never falls back.
    """
    args = (reactor, host, port, helo_name, connect_timeout, timeout, protocol_log, connector_id)
    d = _connect_once(*args, security, peer_name, timeouts)
    if security is not None and security.tls == "opportunistic":

        def in_clear(failure: Failure):
            failure.trap(OpportunisticTLSFailed)
            log.warn("{host}:{port}: {error}; retrying in clear", host=host, port=port, error=failure.getErrorMessage())
            return _connect_once(*args, security.in_clear(), peer_name, timeouts)

        d.addErrback(in_clear)
    return d


def _connect_once(
    reactor, host: str, port: int, helo_name: str, connect_timeout: float, timeout: float, protocol_log, connector_id: str,
    security, peer_name: str, timeouts: PhaseTimeouts | None = None,
) -> Deferred:
    client = SMTPClient(helo_name, reactor, timeout, protocol_log, connector_id, security, peer_name or host, timeouts)
    d = endpoint_for(reactor, host, port, connect_timeout).connect(_OneClient(client))
    d.addCallback(lambda _: client.ready)
    return d
