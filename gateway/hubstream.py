"""
The frontend's body going on to the hub while the client is still sending it.

Sent only at the client's end of data, a 5 MB message made the client's
final reply wait for the whole transfer to the hub and then the hub's write
(issue 22 item 4). Where the hub offers CHUNKING and PIPELINING, the
frontend (gateway/proxy.py) instead passes the body on in non-LAST
`BDAT <n>` chunks as it arrives, so at the end only the tail and
`BDAT <n> LAST` remain and the hub has already written the rest. The hub
commits only at LAST: a message the frontend refuses at its end, or a client
that goes away, leaves the hub a transaction to reset or a dropped
connection, never a queued message.

The spool stays the source of truth: a hub that fails mid-stream gets
nothing more, and at the end the transaction is replayed on the next hub
from the spool, as before. What this module bounds:
- what is in flight: chunks sent whose 250 has not come back (the
  transport's write buffer is in that count) stay under IN_FLIGHT; past it
  the body only spools, and goes on from the spool's offset as the hub
  catches up, or with the tail at the end;
- the transport's write buffer itself: the stream is the connection's
  producer while it runs, so a hub that stops reading (or answers chunks
  it has not read) pauses it once Twisted holds more than its buffer size;
- what waits in memory: the bytes not yet sent, up to CHUNK_MAX, else they
  are read back from the spool;
- small messages: nothing streams below STREAM_FROM, so a 5 KB message is
  still exactly one `BDAT <n> LAST`.
"""

from __future__ import annotations

from typing import IO, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.errors import SMTPReply, out_of_step

# A chunk goes out once this much of the body waits: below it a message is one BDAT LAST at its end.
STREAM_FROM = 256 * 1024
# The largest chunk, and the most of the body held in memory waiting to be sent.
CHUNK_MAX = 512 * 1024
# Octets sent in chunks whose reply has not come back.
IN_FLIGHT = 1024 * 1024


def streams_to(client: Any) -> bool:
    """Whether the body may go on in chunks before its end: the hub offers CHUNKING and pipelined BDATs (RFC 3030 4.2)."""
    extensions = client.extensions
    return "CHUNKING" in extensions and "PIPELINING" in extensions


@implementer(IPushProducer)
class HubStream:
    """
    The body of one transaction on one hub connection (`client`, an
    SMTPClient), fed as the client's data is spooled. Once `end` is called
    nothing more is sent; `failure` then says whether that hub refused a
    chunk or was lost (the transaction's end handles both), else `streamed`
    octets from the spool's start are with the hub and the rest goes as the
    LAST chunk.
    """

    __slots__ = (
        "client", "spool", "received", "streamed", "unacked", "failure", "_pending", "_pending_size", "_ending", "_drained",
        "_paused", "_producing",
    )

    def __init__(self, client: Any, spool: IO[bytes], received: int) -> None:
        self.client = client
        self.spool = spool
        # Octets spooled so far; of those, sent in chunks; of those, not yet answered.
        self.received = received
        self.streamed = 0
        self.unacked = 0
        # The hub's refusal of a chunk (an SMTPError) or the connection's loss, if either came.
        self.failure: Failure | None = None
        # Spooled octets not yet sent (streamed..received), or None: they are read back from the spool.
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._ending = False
        self._drained: Deferred[None] | None = None
        # The transport's buffer is full (pauseProducing); whether this stream is the transport's producer.
        self._paused = False
        self._producing = False

    def start(self) -> None:
        """Become the connection's producer (its buffer pauses the stream) and send what is due."""
        try:
            self.client.transport.registerProducer(self, True)
        except RuntimeError:
            # Another producer still writes on this connection: nothing streams, the body goes at the end.
            self._ending = True
            return
        self._producing = True
        self.pump()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self.pump()

    def stopProducing(self) -> None:
        # The connection is gone: the chunks' errbacks say so.
        self._paused = True

    def feed(self, data: bytes) -> None:
        """`data` was just spooled: keep it for the next chunk, and send one if it is due."""
        self.received += len(data)
        if self.failure is not None:
            return
        pending = self._pending
        if pending is not None:
            if self._pending_size + len(data) <= CHUNK_MAX:
                pending.append(data)
                self._pending_size += len(data)
            else:
                self._pending = None
        self.pump()

    def pump(self) -> None:
        """Send what waits, in chunks, while the hub keeps up (IN_FLIGHT) and enough waits (STREAM_FROM)."""
        while not self._ending and not self._paused and self.failure is None:
            size = min(self.received - self.streamed, CHUNK_MAX)
            if size < STREAM_FROM or self.unacked + size > IN_FLIGHT:
                return
            self._send(self._take(size), size)

    def _take(self, size: int) -> list[bytes]:
        """The next `size` octets to stream: the pieces kept in memory as they came (no copy), else read back from the spool."""
        pending = self._pending
        if pending is not None and self._pending_size == size:
            self._pending = []
            self._pending_size = 0
            return pending
        spool = self.spool
        end = spool.tell()
        spool.seek(self.streamed)
        data = spool.read(size)
        spool.seek(end)
        # Caught up: what arrives next is kept in memory again.
        self._pending = [] if self.streamed + size == self.received else None
        self._pending_size = 0
        return [data]

    def _send(self, parts: list[bytes], size: int) -> None:
        self.streamed += size
        self.unacked += size
        d = self.client.send_chunk(parts, size)
        d.addCallbacks(self._answered, self._lost, callbackArgs=(size,), errbackArgs=(size,))

    def _answered(self, reply: SMTPReply, size: int) -> None:
        self.unacked -= size
        if reply.code != 250 and self.failure is None:
            # RFC 3030: no more chunks after a refused one; the chunks already pipelined are discarded by the hub.
            self.failure = Failure(out_of_step(reply, "a BDAT chunk"))
        self.pump()
        self._check_drained()

    def _lost(self, failure: Failure, size: int) -> None:
        self.unacked -= size
        if self.failure is None:
            self.failure = failure
        self._check_drained()

    def _check_drained(self) -> None:
        if self.unacked == 0 and self._drained is not None:
            d, self._drained = self._drained, None
            d.callback(None)

    def end(self) -> Deferred[None]:
        """The client's data is complete, or the transaction is over: send nothing more; fires once no chunk awaits its reply."""
        self._ending = True
        self._pending = None
        if self._producing:
            # The tail goes with a producer of its own (send_bdat).
            self._producing = False
            self.client.transport.unregisterProducer()
        if self.unacked == 0:
            return succeed(None)
        if self._drained is None:
            self._drained = Deferred()
        return self._drained
