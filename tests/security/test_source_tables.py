"""
Attack: fill the gateway's memory, or dodge its per-source limits, with
many client addresses. An IPv6 client owns a /64: counted per address it
had 2**64 fresh "sources" for max_inbound_connection_per_source and
message_rate_limit. The message-rate table was never pruned, so a scan of
addresses grew it for ever.
"""

from gateway import testing
from gateway.errors import Reply
from gateway.policy.limits import PRUNE_AT, ConnectionLimits, source_key

CFG = testing.config(receive_connectors=[
    {"name": "FE", "role": "frontend", "bindings": ["127.0.0.1:25"], "max_inbound_connection_per_source": 2,
     "message_rate_limit": 2},
])
(FE,) = CFG.receive_connectors


def test_one_ipv6_slash_64_is_one_source_for_the_connection_limit():
    limits = ConnectionLimits()
    assert limits.admit(FE, "2001:db8:1:2::1") is None
    assert limits.admit(FE, "2001:db8:1:2:ffff::7") is None
    assert limits.admit(FE, "2001:db8:1:2:dead:beef:0:1") is Reply.TOO_MANY_CONNECTIONS_FROM_SOURCE
    assert limits.admit(FE, "2001:db8:1:3::1") is None  # the next /64 is another source
    limits.release(FE, "2001:db8:1:2::1")
    assert limits.admit(FE, "2001:db8:1:2:aaaa::1") is None


def test_one_ipv6_slash_64_is_one_source_for_the_message_rate():
    limits = ConnectionLimits()
    assert limits.message(FE, "2001:db8::1", 0.0) and limits.message(FE, "2001:db8::2", 1.0)
    assert not limits.message(FE, "2001:db8::3", 2.0)


def test_the_prefix_is_configurable():
    limits = ConnectionLimits(ipv6_prefix=128)
    assert all(limits.admit(FE, f"2001:db8::{n:x}") is None for n in range(1, 10))
    assert testing.config(limits={"ipv6_source_prefix": 48}).limits.ipv6_source_prefix == 48
    assert source_key("2001:db8:1:2:3:4:5:6", 48) == "2001:db8:1::/48"
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1" and source_key("192.0.2.1") == "192.0.2.1"


def test_an_address_scan_does_not_grow_the_message_rate_table_for_ever():
    limits = ConnectionLimits()
    now = 0.0
    for n in range(50_000):
        now += 0.01  # 100 new addresses a second, each sending one message
        assert limits.message(FE, f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", now)
    # At most the last minute's sources (6,000) plus the slack of the amortised prune.
    assert limits.tracked_sources <= 2 * max(PRUNE_AT, 6_000)


def test_auth_failures_from_one_ipv6_slash_64_lock_the_whole_network_out():
    """A brute-forcer rotating through its /64 used to get a fresh per-source count with every address."""
    from twisted.internet.task import Clock

    from gateway.auth.throttle import AuthThrottle

    t = AuthThrottle(Clock(), max_per_source=3, max_per_user=100, window=60.0, lockout=300.0)
    for n in range(3):
        t.failed(f"2001:db8:1:2::{n + 1:x}", f"user{n}")
    assert t.locked("2001:db8:1:2:ffff::9") == "source"
    assert t.locked("2001:db8:1:3::1") is None and t.locked("192.0.2.1") is None
