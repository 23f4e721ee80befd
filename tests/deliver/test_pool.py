"""The connection pool: reuse, rotation over hosts, retirement before the peer's ConnectionTimeout."""

from twisted.internet.task import Clock

from gateway.config import HostPort
from gateway.deliver.client import SMTPClient
from gateway.deliver.pool import MAX_AGE, ConnectionPool


def pooled(pool: ConnectionPool, clock) -> SMTPClient:
    client = SMTPClient("fe", clock)
    client.connected = True
    client.quit = lambda: setattr(client, "connected", False)
    pool._born[client] = clock.seconds()
    return client


def test_released_client_is_reused_until_it_is_too_old():
    clock = Clock()
    pool = ConnectionPool(clock, (HostPort("127.0.0.1", 2525),), "fe", 5, idle_max=4)
    client = pooled(pool, clock)
    pool.release(client)
    got = []
    pool.acquire().addCallback(got.append)
    assert got == [(client, True)]
    clock.advance(MAX_AGE + 1)
    pool.release(client)
    assert not client.connected and pool._idle == []


def test_idle_limit():
    clock = Clock()
    pool = ConnectionPool(clock, (HostPort("127.0.0.1", 2525),), "fe", 5, idle_max=1)
    a, b = pooled(pool, clock), pooled(pool, clock)
    pool.release(a)
    pool.release(b)
    assert pool._idle == [a] and not b.connected


def test_a_refusing_address_is_marked_bad_and_the_next_tried_in_the_same_attempt(monkeypatch):
    """A smart host name with three addresses: the first refuses, the second answers; the next attempt skips the first."""
    from twisted.internet.defer import fail, succeed
    from twisted.internet.error import ConnectionRefusedError

    from gateway.deliver import client as smtp_client
    from gateway.deliver.resolve import MXResolver
    from tests.deliver.test_resolve import FakeResolver

    clock = Clock()
    tried = []

    def connect(reactor, host, port, *args):
        tried.append(host)
        if host == "192.0.2.1":
            return fail(ConnectionRefusedError())
        c = SMTPClient("fe", clock)
        c.connected = True
        return succeed(c)

    monkeypatch.setattr(smtp_client, "connect", connect)
    resolver = MXResolver(FakeResolver(a={"relay.isp.example": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]}))
    pool = ConnectionPool(clock, (HostPort("relay.isp.example", 25),), "fe", 5, idle_max=0, resolver=resolver, rotate=False)
    got = []
    pool.acquire().addCallback(got.append)
    assert tried == ["192.0.2.1", "192.0.2.2"] and got[0][1] is False
    tried.clear()
    pool.acquire(reuse=False).addCallback(got.append)
    # Rotation starts at the second address now; the bad first one would come last.
    assert tried == ["192.0.2.2"]
    tried.clear()
    pool.acquire(reuse=False).addCallback(got.append)
    assert tried == ["192.0.2.3"]


def _fake_connect(monkeypatch, clock, made):
    from twisted.internet.defer import succeed

    from gateway.deliver import client as smtp_client

    def connect(reactor, host, port, *args):
        c = SMTPClient("fe", clock)
        c.connected = True
        c.quit = lambda c=c: setattr(c, "connected", False)
        made.append(c)
        return succeed(c)

    monkeypatch.setattr(smtp_client, "connect", connect)


def test_per_destination_connection_limit_queues_the_next_delivery(monkeypatch):
    """MaxPerDomainOutboundConnections: the third delivery waits for one of two connections to come back."""
    clock, made, got = Clock(), [], []
    _fake_connect(monkeypatch, clock, made)
    pool = ConnectionPool(clock, (HostPort("192.0.2.1", 25),), "fe", 5, idle_max=4, max_connections=2)
    for _ in range(3):
        pool.acquire().addCallback(got.append)
    assert len(made) == 2 and len(got) == 2
    pool.release(got[0][0])
    assert len(got) == 3 and got[2] == (made[0], True) and len(made) == 2


def test_a_connection_retires_after_its_message_limit_and_a_waiter_gets_a_new_one(monkeypatch):
    """SmtpMaxMessagesPerConnection: after N messages the connection quits; a waiting delivery opens a fresh one."""
    clock, made, got = Clock(), [], []
    _fake_connect(monkeypatch, clock, made)
    pool = ConnectionPool(clock, (HostPort("192.0.2.1", 25),), "fe", 5, idle_max=4, max_connections=1, max_messages=2)
    pool.acquire().addCallback(got.append)
    pool.release(made[0])
    pool.acquire().addCallback(got.append)
    assert got[1] == (made[0], True)
    pool.acquire().addCallback(got.append)
    assert len(got) == 2
    pool.release(made[0])
    assert not made[0].connected and len(made) == 2 and got[2] == (made[1], False)


def test_a_broken_connection_frees_its_place(monkeypatch):
    clock, made, got = Clock(), [], []
    _fake_connect(monkeypatch, clock, made)
    pool = ConnectionPool(clock, (HostPort("192.0.2.1", 25),), "fe", 5, idle_max=4, max_connections=1)
    pool.acquire().addCallback(got.append)
    pool.acquire().addCallback(got.append)
    made[0].connected = False
    pool.discard(made[0])
    assert len(made) == 2 and got[1] == (made[1], False)
