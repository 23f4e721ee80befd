"""Connection and message-rate counting per connector and client address."""

from gateway import testing
from gateway.errors import Reply
from gateway.policy.limits import ConnectionLimits

CFG = testing.config(receive_connectors=[
    {"name": "FE", "role": "frontend", "bindings": ["127.0.0.1:25"], "max_inbound_connection": 3,
     "max_inbound_connection_per_source": 2, "message_rate_limit": 2},
    {"name": "Open", "role": "frontend", "bindings": ["127.0.0.1:26"], "max_inbound_connection": "unlimited",
     "max_inbound_connection_per_source": "unlimited"},
    {"name": "Hub", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["127.0.0.0/8"]},
])
FE, OPEN, HUB = CFG.receive_connectors


def test_defaults_follow_exchange():
    default = testing.config().receive_connectors[0]
    assert (default.max_inbound_connection, default.max_inbound_connection_per_source, default.message_rate_limit) == (5000, 20, None)
    assert HUB.max_inbound_connection_per_source is None  # frontends share few addresses
    assert (OPEN.max_inbound_connection, OPEN.max_inbound_connection_per_source) == (None, None)


def test_per_source_then_total_limit_and_release():
    limits = ConnectionLimits()
    assert limits.admit(FE, "192.0.2.1") is None
    assert limits.admit(FE, "192.0.2.1") is None
    assert limits.admit(FE, "192.0.2.1") is Reply.TOO_MANY_CONNECTIONS_FROM_SOURCE
    assert limits.admit(FE, "192.0.2.2") is None
    assert limits.admit(FE, "192.0.2.3") is Reply.TOO_MANY_CONNECTIONS
    limits.release(FE, "192.0.2.1")
    assert limits.admit(FE, "192.0.2.3") is None
    assert all(limits.admit(OPEN, "192.0.2.1") is None for _ in range(50))


def test_message_rate_is_a_sliding_minute():
    limits = ConnectionLimits()
    assert limits.message(FE, "192.0.2.1", 0.0) and limits.message(FE, "192.0.2.1", 10.0)
    assert not limits.message(FE, "192.0.2.1", 59.0)
    assert limits.message(FE, "192.0.2.2", 59.0)
    assert limits.message(FE, "192.0.2.1", 60.5)
    assert all(limits.message(OPEN, "192.0.2.1", 1.0) for _ in range(100))
