"""A graceful stop over StringTransport: what each client sees (gateway/smtpd/shutdown.py)."""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.protocol import ESMTPServer
from gateway.smtpd.shutdown import LINGER, Sessions

SHUTDOWN = "421 4.3.2 Service not available, closing transmission channel"
QUEUED = "250 2.6.0 <id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery"


class Node:
    """Sessions of one process sharing a registry, a clock and a handler."""

    def __init__(self) -> None:
        cfg = testing.config()
        self.connector = cfg.receive_connectors[0]
        self.policy = SessionPolicy(AcceptedDomains(cfg.accepted_domains))
        self.clock = Clock()
        self.handler = testing.FakeHandler()
        self.sessions = Sessions()

    def connect(self):
        proto = ESMTPServer(self.connector, self.handler, self.policy, self.clock)
        proto.sessions = self.sessions
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
        proto.makeConnection(transport)
        transport.clear()
        return proto, transport


def send(proto, transport, data: str) -> list[str]:
    proto.dataReceived(data.encode())
    out = transport.value().decode()
    transport.clear()
    return out.split("\r\n")[:-1]


def lose(proto, transport) -> None:
    """What the reactor does once a closing transport has written its last bytes."""
    assert transport.disconnecting
    proto.connectionLost(None)


def test_a_message_in_data_finishes_and_gets_its_250_then_the_next_command_gets_421():
    """At the stop an idle session is told 421 and closed; one in DATA takes the rest of its message first."""
    node = Node()
    idle, idle_t = node.connect()
    busy, busy_t = node.connect()
    send(busy, busy_t, "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nSubject: half\r\n")
    stopped = node.sessions.stop(node.clock, 30.0)
    # The idle session is told at once and closed; the one in DATA is not.
    assert idle_t.value().decode() == SHUTDOWN + "\r\n"
    lose(idle, idle_t)
    assert not busy_t.disconnecting and not stopped.called
    assert send(busy, busy_t, "\r\nthe rest\r\n.\r\n") == [QUEUED]
    assert node.handler.finished[0].body == b"Subject: half\r\n\r\nthe rest\r\n"
    assert send(busy, busy_t, "MAIL FROM:<a@b.example>\r\n") == [SHUTDOWN]
    lose(busy, busy_t)
    assert stopped.called


def test_a_message_between_bdat_chunks_finishes_before_the_421():
    """A BDAT message with its LAST chunk still to come (a frontend streaming to this hub) is in flight, not idle: its LAST gets the 250."""
    node = Node()
    proto, transport = node.connect()
    replies = send(proto, transport, "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nBDAT 15\r\nSubject: half\r\n")
    assert replies[-1] == "250 2.0.0 15 octets received"
    stopped = node.sessions.stop(node.clock, 30.0)
    assert not transport.disconnecting and not stopped.called
    assert send(proto, transport, "BDAT 12 LAST\r\n\r\nthe rest\r\n") == [QUEUED]
    assert node.handler.finished[0].body == b"Subject: half\r\n\r\nthe rest\r\n"
    assert send(proto, transport, "MAIL FROM:<a@b.example>\r\n") == [SHUTDOWN]
    lose(proto, transport)
    assert stopped.called


def test_the_250_waits_for_the_queue_and_a_silent_client_is_closed_after_linger():
    """A session waiting for the queue's fsync is not idle: it gets its 250, then the 421 if its client says nothing."""
    node = Node()
    node.handler.finish_deferreds = []
    proto, transport = node.connect()
    assert send(proto, transport, "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nbody\r\n.\r\n")[-1].startswith("354")
    stopped = node.sessions.stop(node.clock, 30.0)
    # Waiting for the queue's fsync: not idle, not closed.
    assert not transport.disconnecting
    from gateway.errors import SMTPReply

    node.handler.finish_deferreds[0].callback(SMTPReply(250, "2.6.0", "<id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery"))
    assert transport.value().decode() == QUEUED + "\r\n"
    transport.clear()
    node.clock.advance(LINGER)
    assert transport.value().decode() == SHUTDOWN + "\r\n"
    lose(proto, transport)
    assert stopped.called


def test_after_the_grace_period_what_is_left_is_closed_without_a_250():
    """A message still coming in at the end of shutdown_grace gets the 421, never a 250: its client keeps it and retries."""
    node = Node()
    proto, transport = node.connect()
    send(proto, transport, "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nslow")
    stopped = node.sessions.stop(node.clock, 5.0)
    node.clock.advance(4.9)
    assert not transport.disconnecting
    node.clock.advance(0.1)
    assert transport.value().decode() == SHUTDOWN + "\r\n"
    assert node.handler.transactions[0].aborted and not node.handler.finished
    lose(proto, transport)
    assert stopped.called


def test_a_stop_with_no_session_open_is_immediate():
    """Nothing in flight: nothing to wait for."""
    assert Sessions().stop(Clock(), 30.0).called
