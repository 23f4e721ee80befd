"""
Handing a transport's bytes to the kernel now.

A Twisted TCP transport sends what `write` buffered at the reactor's next
write pass: after whatever else the current turn does, and an epoll wait
later. An SMTP peer that waits for each reply (one client sending one
message, or our own client waiting on a next hop) pays that delay on every
round trip. Callers write what belongs together first (every reply to
pipelined commands, all of a pipelined group), then send it at once.

The shortcut reads two private attributes of Twisted's FileDescriptor
(`_writeDisconnected`, `_tempDataBuffer`) to know that nothing waits ahead of
the bytes. When a transport lacks either (a Twisted that renamed them), the
bytes take `write` and `send_now`: the same order and the same bytes, one
write pass later (tests/fastpath/ fails on such a Twisted first).

On a TLS connection Twisted's BufferingTLSTransport holds each write for a
reactor turn (a `callLater(0)`) before OpenSSL encrypts it, and the
encrypted bytes then wait for a write pass: two reactor turns and an empty
`send` per reply, on every round trip of a submission session (issue 22).
`send` flushes that aggregator (`protocol._aggregator.flush()`, private)
so the reply is encrypted and sent now, in order behind whatever the
aggregator held; its scheduled flush later finds nothing to do. Without the
attribute the reply takes Twisted's path, a turn later.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.tcp import Connection

# What a transport without the private attributes reads as: "something may be waiting", so `write` is used.
_UNKNOWN = object()


def available() -> bool:
    """Whether Twisted's TCP connections still carry the private attributes `send` reads."""
    return getattr(Connection, "_writeDisconnected", _UNKNOWN) is False and "_tempDataBuffer" in _init_names()


def tls_available() -> bool:
    """Whether Twisted's TLS protocol still aggregates small writes in `_aggregator`, which `send` flushes."""
    from twisted.protocols.tls import BufferingTLSTransport, _AggregateSmallWrites

    return callable(getattr(_AggregateSmallWrites, "flush", None)) and "_aggregator" in BufferingTLSTransport.__annotations__


def _flush_tls(transport) -> None:
    """Encrypt what the TLS layer of `transport` aggregated, into the transport's buffer, now."""
    flush = getattr(getattr(getattr(transport, "protocol", None), "_aggregator", None), "flush", None)
    if callable(flush):
        flush()


def _init_names() -> set[str]:
    """The attribute names FileDescriptor.__init__ sets on a new instance (without a reactor or a socket)."""
    from twisted.internet.abstract import FileDescriptor

    try:
        # Any true value stands in for the reactor: __init__ only keeps it.
        return set(vars(FileDescriptor(reactor=cast(Any, object()))))
    except Exception:
        return set()


def send(transport, data: bytes) -> None:
    """
    Send `data` on `transport` now. On a plain TCP connection with nothing
    already waiting in its buffer, the bytes go straight to the socket: no
    buffer, and no registering the socket for writability and unregistering
    it again (two epoll_ctl calls per reply). Whatever the socket does not
    take (a full send buffer, an error) goes through `write`, so Twisted
    keeps the order, waits for the peer and reports a lost connection as
    usual. TLS connections take `write`, the TLS layer's flush and
    `send_now`; test transports `write` and `send_now`.
    """
    if not data:
        return
    if (
        isinstance(transport, Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and getattr(transport, "_writeDisconnected", _UNKNOWN) is False
        and not transport.dataBuffer
        and getattr(transport, "_tempDataBuffer", _UNKNOWN) == []
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
    if getattr(transport, "TLS", False):
        _flush_tls(transport)
    send_now(transport)


def send_now(transport) -> None:
    """
    Send what `transport` holds, as far as the socket takes it; the rest
    waits for the reactor as usual. Transports without a descriptor (test
    transports) are left alone, and so is one already closing: the reactor
    closes it once its buffer is out.
    """
    write_now = getattr(transport, "doWrite", None)
    if write_now is not None and not transport.disconnecting:
        write_now()
