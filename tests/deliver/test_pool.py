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
