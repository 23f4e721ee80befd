"""SMTPDelivery over a real client on StringTransport: each recipient's outcome, kept connections, retries."""

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.deliver.client import SMTPClient
from gateway.deliver.resolve import ResolveError
from gateway.deliver.smtp import SMTPDelivery
from gateway.envelope import Envelope, Recipient, RecipientState

BODY = b"Subject: t\r\n\r\nhello\r\n"
DELIVERED, PENDING, FAILED = RecipientState.DELIVERED, RecipientState.PENDING, RecipientState.FAILED


def client(extensions: bytes = b"250-sink\r\n250 PIPELINING\r\n") -> tuple[SMTPClient, StringTransport]:
    c = SMTPClient("hub.corp.example", Clock(), timeout=30)
    transport = StringTransport()
    c.makeConnection(transport)
    c.dataReceived(b"220 sink ready\r\n")
    c.dataReceived(extensions)
    transport.clear()
    return c, transport


class Pool:
    """Hands out the given (client, reused) pairs in turn; records releases and discards."""

    def __init__(self, *handed) -> None:
        self.handed = list(handed)
        self.asked: list[bool] = []
        self.released: list = []
        self.discarded: list = []

    def acquire(self, reuse: bool = True):
        self.asked.append(reuse)
        item = self.handed.pop(0)
        return fail(item) if isinstance(item, Exception) else succeed(item)

    def release(self, c) -> None:
        self.released.append(c)

    def discard(self, c) -> None:
        self.discarded.append(c)


class Body:
    """A StoredBody stand-in that records whether its file was closed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    def open(self):
        import io

        body = self

        class File(io.BytesIO):
            def close(self):
                body.closed = True
                super().close()

        return File(self.data)


def envelope(*recipients: str) -> Envelope:
    return Envelope("7", 7, "<m@x>", "s@x.example", tuple(Recipient(r) for r in recipients), 0.0, len(BODY))


def deliver(pool: Pool, recipients=("a@corp.example",), body=None):
    delivery = SMTPDelivery(None, (), "hub.corp.example", pool=pool, next_hop="sink")
    results = []
    delivery.deliver(envelope(*recipients), list(recipients), body or Body(BODY)).addBoth(results.append)
    return results


def test_each_recipient_gets_its_own_outcome_and_the_connection_is_kept():
    c, transport = client()
    pool = Pool((c, True))
    body = Body(BODY)
    results = deliver(pool, ("a@corp.example", "b@corp.example", "c@corp.example"), body)
    assert transport.value() == (
        b"MAIL FROM:<s@x.example>\r\nRCPT TO:<a@corp.example>\r\nRCPT TO:<b@corp.example>\r\nRCPT TO:<c@corp.example>\r\nDATA\r\n"
    )
    c.dataReceived(b"250 ok\r\n250 ok\r\n450 4.2.1 mailbox busy\r\n550 5.1.1 no such user\r\n354 go\r\n")
    c.dataReceived(b"250 2.0.0 queued\r\n")
    assert results == [{
        "a@corp.example": (DELIVERED, "250 2.0.0 queued"),
        "b@corp.example": (PENDING, "450 4.2.1 mailbox busy"),
        "c@corp.example": (FAILED, "550 5.1.1 no such user"),
    }]
    assert body.closed and pool.released == [c] and pool.discarded == []


def test_a_kept_connection_found_closed_gets_one_fresh_try():
    stale, _ = client()
    fresh, transport = client()
    pool = Pool((stale, True), (fresh, False))
    stale.connectionLost(None)
    results = deliver(pool)
    assert pool.asked == [True, False] and pool.discarded == [stale]
    fresh.dataReceived(b"250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    assert results == [{"a@corp.example": (DELIVERED, "250 2.0.0 queued")}]
    assert pool.released == [fresh]
    assert transport.value().endswith(b"hello\r\n.\r\n")


def test_a_fresh_connection_lost_mid_transaction_defers_without_another_try():
    fresh, _ = client()
    pool = Pool((fresh, False))
    results = deliver(pool)
    fresh.dataReceived(b"250 ok\r\n")
    fresh.connectionLost(None)
    ((_recipient, (state, reason)),) = results[0].items()
    assert state is PENDING and reason.startswith("451 4.4.0 delivery to sink interrupted:")
    assert pool.asked == [True] and pool.discarded == [fresh] and pool.released == []


def test_an_unreachable_next_hop_defers_and_a_permanent_resolve_error_fails():
    results = deliver(Pool(ConnectionRefusedError("127.0.0.1")))
    ((_, (state, reason)),) = results[0].items()
    assert state is PENDING and reason.startswith("451 4.4.0 next hop sink unreachable:")
    results = deliver(Pool(ResolveError("550 5.4.4 no such domain", permanent=True)))
    assert results == [{"a@corp.example": (FAILED, "550 5.4.4 no such domain")}]


def test_every_recipient_refused_ends_a_pipelined_data_empty():
    c, transport = client()
    pool = Pool((c, True))
    results = deliver(pool, ("a@corp.example",))
    transport.clear()
    c.dataReceived(b"250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n")
    assert transport.value() == b".\r\n"
    c.dataReceived(b"554 5.5.1 no valid recipients\r\n")
    assert results == [{"a@corp.example": (FAILED, "550 5.1.1 no such user")}]
    assert pool.released == [c]


def test_without_pipelining_each_command_waits_and_a_refused_transaction_is_reset():
    c, transport = client(b"250 sink\r\n")
    pool = Pool((c, True))
    results = deliver(pool, ("a@corp.example",))
    assert transport.value() == b"MAIL FROM:<s@x.example>\r\n"
    transport.clear()
    c.dataReceived(b"250 ok\r\n")
    assert transport.value() == b"RCPT TO:<a@corp.example>\r\n"
    transport.clear()
    c.dataReceived(b"550 5.1.1 no such user\r\n")
    assert transport.value() == b"RSET\r\n"
    c.dataReceived(b"250 ok\r\n")
    assert results == [{"a@corp.example": (FAILED, "550 5.1.1 no such user")}]


def test_over_the_connectors_limit_fails_without_a_connection():
    pool = Pool()
    delivery = SMTPDelivery(None, (), "hub.corp.example", pool=pool, next_hop="sink", max_message_size=10)
    results = []
    delivery.deliver(envelope("a@corp.example"), ["a@corp.example"], Body(BODY)).addCallback(results.append)
    ((_, (state, reason)),) = results[0].items()
    assert state is FAILED and reason.startswith("552 5.3.4") and pool.asked == []
