"""
A listener's side of the PROXY protocol: read the header, then hand the
connection to the session the real client address selects.

On a binding whose connectors use `proxy_protocol`, a connection must come
from one of their `trusted_proxies` and begin with a PROXY header; nothing
is sent before the header is read (no banner). The header's source address
becomes the client everywhere: the session sees it through getPeer(). A
missing, malformed or slow header closes the connection and is logged.

Implicit TLS (port 465) behind a balancer: the session starts TLS as soon
as it is connected, and the bytes that came in the same read as the header
are the client's first TLS bytes (its ClientHello). They go to the TLS
layer now under the session, never to the session in clear: an EHLO sent
in clear behind the header is never executed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from gateway.smtpd.proxyproto import ProxyHeaderError, parse

log = Logger(namespace="exgateway.smtpd")

HEADER_TIMEOUT = 10.0


def _address(host: str, port: int):
    return IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)


class ProxiedTransport:
    """The real transport, except that it reports the addresses from the PROXY header."""

    def __init__(self, transport, peer, host) -> None:
        self._transport = transport
        self._peer = peer
        self._host = host
        # Set when the session starts TLS: what is read from then on belongs to the TLS layer.
        self.tls_started = False

    def startTLS(self, *args, **kwargs):
        self.tls_started = True
        return self._transport.startTLS(*args, **kwargs)

    def getPeer(self):
        return self._peer

    def getHost(self):
        return self._host

    def __getattr__(self, name):
        return getattr(self._transport, name)


@implementer(IHandshakeListener)
class ProxyHeaderReceiver(Protocol):
    # The listener's ITransport (typed Any: the zope interfaces do not type-check without a plugin).
    transport: Any

    def __init__(self, factory, proxy_addr) -> None:
        self.factory = factory
        self.proxy_addr = proxy_addr
        self.inner: Any = None
        self._buffer = b""
        self._timer = None

    def connectionMade(self) -> None:
        self._timer = self.factory.clock.callLater(HEADER_TIMEOUT, self._slow)

    def _slow(self) -> None:
        self._timer = None
        log.warn("no PROXY header from {proxy} within {seconds:g}s on {binding}: closed",
                 proxy=self.proxy_addr.host, seconds=HEADER_TIMEOUT, binding=str(self.factory.binding))
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self._buffer += data
        try:
            header, rest = parse(self._buffer)
        except ProxyHeaderError as e:
            log.warn("bad PROXY header from {proxy} on {binding}: {error}; closed",
                     proxy=self.proxy_addr.host, binding=str(self.factory.binding), error=str(e))
            self._cancel()
            self.transport.abortConnection()
            return
        if header is None:
            return
        self._cancel()
        self._buffer = b""
        real_host = self.transport.getHost()
        if header.local or header.source is None or header.destination is None:
            peer, host = self.transport.getPeer(), real_host
        else:
            peer, host = _address(*header.source), _address(*header.destination)
        self.inner = self.factory.session_for(peer.host)
        transport = ProxiedTransport(self.transport, peer, host)
        self.inner.makeConnection(transport)
        if not rest:
            return
        if not transport.tls_started:
            self.inner.dataReceived(rest)
            return
        # startTLS put a TLS layer between the connection and this receiver
        # (the reactor's transports make it their `protocol`); the next read
        # would go through it, and so must these bytes.
        layer = getattr(self.transport, "protocol", None)
        if layer is None or layer is self:
            log.warn("{count} bytes behind the PROXY header from {proxy} with no TLS layer to take them on {binding}: closed",
                     count=len(rest), proxy=self.proxy_addr.host, binding=str(self.factory.binding))
            self.transport.abortConnection()
            return
        layer.dataReceived(rest)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason=None) -> None:
        self._cancel()
        if self.inner is not None:
            self.inner.connectionLost(reason)

    def handshakeCompleted(self) -> None:
        if self.inner is not None and IHandshakeListener.providedBy(self.inner):
            self.inner.handshakeCompleted()
