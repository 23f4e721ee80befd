"""
A hub that answers 250 to every BDAT chunk but has stopped reading them,
over real loopback TCP: the frontend's stream (gateway/hubstream.py) is the
connection's producer, so it stops handing chunks to the transport once the
kernel's buffers and Twisted's are full. Counting replies alone, it had
written all 24 MB of this message into the frontend's memory.
"""

import tempfile

import pytest_twisted
from twisted.internet import protocol, reactor, task
from twisted.internet.defer import Deferred

from gateway.deliver.client import connect
from gateway.hubstream import CHUNK_MAX, HubStream

TOTAL = 24 * 1024 * 1024
PIECE = b"x" * 65534 + b"\r\n"
# What may sit in the kernel's socket buffers (send and receive, autotuned: about 2.9 MB here, where
# Debian's limits are 4 MB and 6 MB) and Twisted's write buffer at once; without the producer, all 24 MB.
BUFFERED_AT_MOST = 12 * 1024 * 1024 + CHUNK_MAX


class ReadsNothing(protocol.Protocol):
    """Greets, answers EHLO with PIPELINING and CHUNKING, then never reads again and drips 250s."""

    def connectionMade(self) -> None:
        self.transport.write(b"220 hub.corp.example ESMTP\r\n")
        self.drip = task.LoopingCall(self.transport.write, b"250 2.0.0 octets received\r\n")

    def dataReceived(self, data: bytes) -> None:
        if self.drip.running:
            return
        self.transport.write(b"250-hub.corp.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
        self.transport.pauseProducing()
        self.drip.start(0.005)

    def connectionLost(self, reason) -> None:
        if self.drip.running:
            self.drip.stop()


@pytest_twisted.ensureDeferred
async def test_a_hub_that_answers_without_reading_gets_no_more_than_the_buffers_hold():
    factory = protocol.Factory.forProtocol(ReadsNothing)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = await connect(reactor, "127.0.0.1", port.getHost().port, "fe.corp.example", 5, timeout=30)
    fed = 0
    with tempfile.TemporaryFile() as spool:
        stream = HubStream(client, spool, 0)
        stream.start()
        try:
            while fed < TOTAL:
                spool.write(PIECE)
                fed += len(PIECE)
                stream.feed(PIECE)
                # Let the reactor write, and the hub's 250s come back.
                wait: Deferred = Deferred()
                reactor.callLater(0.001, wait.callback, None)
                await wait
            assert stream.failure is None
            assert 0 < stream.streamed <= BUFFERED_AT_MOST, (stream.streamed, fed)
        finally:
            client.abort()
            await port.stopListening()
