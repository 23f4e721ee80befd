"""
The outbound ESMTP client: used for the frontend's hand-off to the hub and
for delivery to a next hop.

Written here rather than on twisted.mail's client: commands are pipelined
when the server offers PIPELINING, replies are matched to commands in order,
one connection carries many transactions, and the body is streamed from a
file with dot-stuffing that keeps state across chunks.

This module holds the wire: commands out, replies in (read and bounded by
gateway/deliver/replies.py), one timer per connection, the body out
(gateway/deliver/body.py), and connecting. What happens between the
greeting and the first MAIL (EHLO, STARTTLS, node login, AUTH) is
gateway/deliver/negotiation.py.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from typing import IO, Any

from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionLost, TimeoutError
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.config.values import HostPort
from gateway.deliver.body import SMALL_BODY, BodyProducer, dot_stuff
from gateway.deliver.negotiation import Negotiation
from gateway.deliver.opportunistic import OpportunisticTLSFailed
from gateway.deliver.replies import (
    GarbledReply,
    LoginUnavailable,
    ReplyGroup,
    ReplyReader,
    ReplyTooLong,
    SMTPClientError,
    parse_reply,
)
from gateway.deliver.timeouts import PhaseTimeouts
from gateway.errors import SMTPReply
from gateway.fastpath.sendnow import send_now
from gateway.logs.protocol import SessionLog, endpoint
from gateway.logs.sendlog import tls_events
from gateway.logs.sessionid import new_session_id

# What callers import from here: the client's errors, its body threshold and the reply parser.
__all__ = [
    "SMALL_BODY", "LoginUnavailable", "ReplyTooLong", "SMTPClient", "SMTPClientError", "connect", "endpoint_for", "parse_reply",
]

log = Logger(namespace="exgateway.deliver")


@implementer(IHandshakeListener)
class SMTPClient(Negotiation, Protocol):
    """One SMTP connection; `ready` fires with the client after EHLO (and STARTTLS and AUTH: Negotiation)."""

    # A TCP or TLS transport (write, startTLS, abortConnection, registerProducer), once connected.
    transport: Any

    def __init__(
        self, helo_name: str, clock: Any, timeout: float = 300.0, protocol_log: Any = None, connector_id: str = "",
        security: Any = None, peer_name: str = "", timeouts: PhaseTimeouts | None = None,
    ) -> None:
        # How long each reply may take, by phase (greeting, MAIL, RCPT, DATA, end of data...).
        self.timeouts = timeouts or PhaseTimeouts.uniform(timeout)
        # The wait for each reply in _waiting, in the same order.
        self._limits: deque[float] = deque()
        # A body being streamed: the peer must take some of it within timeouts.data_xfer.
        self._xfer: DelayedCall | None = None
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
        self._plog: SessionLog | None = None
        self.helo_name = helo_name
        self.clock = clock
        self.timeout = timeout
        self.ready: Deferred[Any] = Deferred()
        self.extensions: dict[str, str] = {}
        self.connected = False
        self.replies = ReplyReader()
        # Written but not yet handed to the kernel (flush).
        self._unsent = False
        # What waits for each reply, in order: a command's Deferred, or a pipelined group's ReplyGroup once per command.
        self._waiting: deque[Deferred[Any] | ReplyGroup] = deque()
        self._timer: DelayedCall | None = None
        self._context = b"\r\n"

    # --- wire -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        # Commands go out whole (flush); Nagle would only hold one behind the peer's delayed ACK.
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
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

    def start_tls(self, options: Any) -> None:
        self.transport.startTLS(options)

    def dataReceived(self, data: bytes) -> None:
        self._read_replies(data)
        # What the replies' callbacks wrote (the next commands, a body) leaves now.
        self.flush()

    def _read_replies(self, data: bytes) -> None:
        replies = self.replies
        replies.feed(data)
        while True:
            try:
                reply = replies.next_reply()
            except GarbledReply:
                self.abort()
                return
            except ReplyTooLong as e:
                self._reply_too_long(e.args[0])
                return
            if reply is None:
                return
            self._reply(reply)

    def _reply_too_long(self, what: str) -> None:
        """Drop a connection whose server will not end its reply; whoever waits learns why."""
        reason = f"{self.peer_name or 'the server'} sent {what}: connection dropped"
        self._fail_all(Failure(ReplyTooLong(reason)))
        self.abort()

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self._unsent = True

    def flush(self) -> None:
        """Send what was written since the last flush (gateway/fastpath/sendnow.py): after writing a pipelined group outside dataReceived."""
        if self._unsent:
            self._unsent = False
            send_now(self.transport)

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
        timer = self._timer
        if timer is not None and not timer.active():
            timer = None
        if not self._waiting:
            if timer is not None:
                timer.cancel()
            self._timer = None
        elif timer is not None:
            timer.reset(self._limits[0])
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

    def connectionLost(self, reason: Failure | None = None) -> None:
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

    def _expect(self, seconds: float | None = None) -> Deferred[Any]:
        """A Deferred for the next reply, awaited `seconds` (timeouts.other); failed at once if the connection is gone."""
        if not self.connected:
            return fail(ConnectionLost("not connected"))
        d: Deferred[Any] = Deferred()
        self._waiting.append(d)
        self._limits.append(self.timeouts.other if seconds is None else seconds)
        if len(self._waiting) == 1:
            self._arm()
        return d

    def command(self, line: str) -> Deferred[Any]:
        """Send one command line; fires with its reply. Callers pipeline only
        where the server offers PIPELINING (see `pipelining`)."""
        d = self._expect(self.timeouts.for_command(line))
        if self.connected:
            if self._plog is not None:
                self._plog.event(">", line)
            self._write(line.encode("utf-8") + b"\r\n")
        return d

    def secret_command(self, line: str, shown: str) -> Deferred[Any]:
        """A command carrying credentials: sent as is, written to the protocol log as `shown` (masked)."""
        d = self._expect(self.timeouts.helo)
        if self.connected:
            if self._plog is not None:
                self._plog.event(">", shown)
            self._write(line.encode("utf-8") + b"\r\n")
        return d

    def commands(self, lines: list[str]) -> Deferred[list[SMTPReply]]:
        """
        Send a pipelined group (where the server offers PIPELINING): every
        line in one write, after `flush`. Fires with the replies in order,
        or with the first failure (a lost connection, a timeout).
        """
        if not self.connected:
            return fail(ConnectionLost("not connected"))
        group = ReplyGroup(len(lines))
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

    def send_body(self, body: IO[bytes], size: int) -> Deferred[Any]:
        """After a 354: stream the body, end it, fire with the final reply."""
        self._context = b"\r\n"
        sent: Deferred[None] = Deferred()
        if size <= SMALL_BODY:
            self._write_body(body.read())
            sent.callback(None)
        else:
            self.transport.registerProducer(BodyProducer(self.transport, body, sent, self._write_body, self.progressed), False)
        return sent.addCallback(self._end_body)

    def send_bdat(self, body: IO[bytes], size: int) -> Deferred[Any]:
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
            producer = BodyProducer(self.transport, body, Deferred(), self.transport.write, self.progressed)
            self.transport.registerProducer(producer, False)
        return d

    def send_chunk(self, parts: list[bytes], size: int) -> Deferred[Any]:
        """
        CHUNKING: one non-LAST `BDAT <size>` and its octets (`parts`, written
        as they are: the transport joins them once), sent now without
        waiting for earlier replies (callers stream only where the server
        offers CHUNKING and PIPELINING, RFC 3030 4.2); fires with its reply.
        """
        d = self._expect(self.timeouts.data_done)
        if not self.connected:
            return d
        if self._plog is not None:
            self._plog.event(">", f"BDAT {size}")
        self.transport.writeSequence([b"BDAT %d\r\n" % size, *parts])
        self._unsent = True
        self.flush()
        return d

    def _write_body(self, chunk: bytes) -> None:
        stuffed, self._context = dot_stuff(chunk, self._context)
        self._write(stuffed)

    def _end_body(self, _: object) -> Deferred[Any]:
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

    def buildProtocol(self, addr: Any) -> SMTPClient:
        return self.client


def endpoint_for(reactor: Any, host: str, port: int, connect_timeout: float) -> Any:
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
