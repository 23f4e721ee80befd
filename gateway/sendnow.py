"""
Handing a transport's buffered bytes to the kernel now.

A Twisted TCP transport sends what `write` buffered at the reactor's next
write pass: after whatever else the current turn does, and an epoll wait
later. An SMTP peer that waits for each reply (one client sending one
message, or our own client waiting on a next hop) pays that delay on every
round trip. Callers write what belongs together first (every reply to
pipelined commands, all of a pipelined group), then call `send_now` once.
"""

from __future__ import annotations


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
