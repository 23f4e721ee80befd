"""send(): bytes go straight to the socket when nothing waits ahead of them; otherwise through Twisted's buffer, in order."""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock

from gateway.fastpath.sendnow import send
from gateway.tls.context import ServerTLS
from gateway.tls.store import make_self_signed


class Accepted(Protocol):
    def connectionMade(self):
        self.factory.open.append(self.transport)
        self.factory.accepted.callback(self.transport)


class Reader(Protocol):
    """Collects what arrives; `until(n)` fires once n bytes are in."""

    def __init__(self):
        self.data = b""
        self._want = None

    def connectionMade(self):
        self.factory.connected.callback(self)

    def dataReceived(self, data):
        self.data += data
        if self._want and len(self.data) >= self._want[0]:
            (_, d), self._want = self._want, None
            d.callback(self.data)

    def until(self, n):
        d = Deferred()
        self._want = (n, d)
        self.dataReceived(b"")
        return d


@pytest.fixture
def connection():
    """(server-side transport, client-side Reader) over loopback TCP."""
    server = Factory.forProtocol(Accepted)
    server.accepted = Deferred()
    server.open = []
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    client = ClientFactory.forProtocol(Reader)
    client.connected = Deferred()
    reactor.connectTCP("127.0.0.1", port.getHost().port, client)
    yield server.accepted, client.connected
    for transport in server.open:
        transport.loseConnection()
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_reply_goes_to_the_socket_without_registering_for_writability(connection, monkeypatch):
    transport = await connection[0]
    reader = await connection[1]
    registered = []
    monkeypatch.setattr(reactor, "addWriter", lambda w: registered.append(w))
    send(transport, b"250 2.1.0 Sender OK\r\n")
    assert registered == []
    assert transport.dataBuffer == b"" and transport._tempDataBuffer == []
    assert await reader.until(21) == b"250 2.1.0 Sender OK\r\n"


@pytest_twisted.ensureDeferred
async def test_what_the_socket_does_not_take_waits_in_twisteds_buffer_and_later_bytes_queue_behind_it(connection):
    transport = await connection[0]
    reader = await connection[1]
    reader.transport.pauseProducing()  # the peer stops reading: the kernel buffers fill
    big = bytes(range(256)) * (32 * 1024)  # 8 MB, more than loopback's buffers hold
    send(transport, big)
    assert transport.dataBuffer or transport._tempDataBuffer, "the rest should wait in Twisted's buffer"
    send(transport, b"250 after the big one\r\n")
    reader.transport.resumeProducing()
    assert await reader.until(len(big) + 23) == big + b"250 after the big one\r\n"


@pytest_twisted.ensureDeferred
async def test_a_transport_without_the_private_buffers_takes_write_not_the_socket(connection, monkeypatch):
    """The runtime guard: a transport lacking _tempDataBuffer (a renamed Twisted) hands the bytes to write, in order."""
    transport = await connection[0]
    await connection[1]
    written, to_socket = [], []
    monkeypatch.delattr(transport, "_tempDataBuffer")
    monkeypatch.setattr(transport, "write", written.append)
    monkeypatch.setattr(transport, "doWrite", lambda: None)
    monkeypatch.setattr(transport, "socket", type("S", (), {"send": lambda self, data: to_socket.append(data)})())
    send(transport, b"250 2.0.0 OK\r\n")
    send(transport, b"221 2.0.0 Bye\r\n")
    assert written == [b"250 2.0.0 OK\r\n", b"221 2.0.0 Bye\r\n"] and to_socket == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    import datetime

    from gateway.tls.store import read_pem

    pem = make_self_signed("CN=mail.corp.example", (), datetime.datetime.now(datetime.UTC))
    return read_pem(tmp_path_factory.mktemp("certs") / "c.pem", pem)


@pytest_twisted.ensureDeferred
async def test_on_tls_a_reply_is_encrypted_and_sent_now_not_a_reactor_turn_later(connection, certificate):
    """BufferingTLSTransport would hold the reply for a callLater(0) and the socket for a write pass; send flushes both."""
    transport = await connection[0]
    reader = await connection[1]
    transport.startTLS(ServerTLS(certificate, Clock()))
    reader.transport.startTLS(CertificateOptions(verify=False))
    send(transport, b"220 ready\r\n")  # held by TLS until the handshake is done, as before
    assert await reader.until(11) == b"220 ready\r\n"
    send(transport, b"250 2.1.0 Sender OK\r\n")
    assert transport.protocol._aggregator._buffer == []
    assert transport.dataBuffer == b"" and transport._tempDataBuffer == [], "the encrypted reply should be in the kernel already"
    assert await reader.until(32) == b"220 ready\r\n250 2.1.0 Sender OK\r\n"
    # Bytes another path wrote through the aggregator go first, in order.
    transport.write(b"250-first\r\n")
    send(transport, b"250 second\r\n")
    assert await reader.until(55) == b"220 ready\r\n250 2.1.0 Sender OK\r\n250-first\r\n250 second\r\n"
