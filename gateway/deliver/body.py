"""
Sending a message body on an outbound connection: dot-stuffing that keeps
state across chunks (a line starting with a dot is stuffed even when a read
splits it from its CRLF; Twisted's own client stuffs per chunk and can miss
it), and the producer that streams a large body from its file as the
transport drains. The inbound side, exact unstuffing, is gateway/smtpd/data.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from gateway.linestart import may_start_a_line_with_dot

BODY_CHUNK = 64 * 1024
# Bodies up to this size are written in one go, without a producer.
SMALL_BODY = 256 * 1024


def dot_stuff(chunk: bytes, context: bytes) -> tuple[bytes, bytes]:
    """
    Dot-stuff one chunk of a message for sending, statefully: `context` is
    the last two bytes sent before it (b"\\r\\n" at the start of a body).
    Returns the stuffed bytes and the context for the next chunk.
    """
    after = (context + chunk[-2:])[-2:]
    if not may_start_a_line_with_dot(chunk, context):
        # Nothing to stuff (no dot, or none after a CRLF): the chunk goes out as it is.
        return chunk, after
    return (context + chunk).replace(b"\r\n.", b"\r\n..")[len(context) :], after


@implementer(IPullProducer)
class BodyProducer:
    """
    Reads a file in chunks as the transport drains, handing each to `write`
    (the client's dot-stuffing writer for DATA, the transport's write for
    BDAT); `progressed` tells the client the peer took data, or (ended=True)
    that the body is done; `done` fires then.
    """

    def __init__(
        self, transport: Any, body: IO[bytes], done: Deferred[None], write: Callable[[bytes], None],
        progressed: Callable[..., None],
    ) -> None:
        self.transport = transport
        self.body = body
        self.done = done
        self.write = write
        self.progressed = progressed

    def resumeProducing(self) -> None:
        self.progressed()
        chunk = self.body.read(BODY_CHUNK)
        if chunk:
            self.write(chunk)
            return
        self.transport.unregisterProducer()
        self.progressed(ended=True)
        self.done.callback(None)

    def stopProducing(self) -> None:
        if not self.done.called:
            self.done.errback(ConnectionLost("body transfer stopped"))
