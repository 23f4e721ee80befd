"""Most-specific connector selection on a shared binding."""

from ipaddress import ip_address

from gateway import testing
from gateway.connectors import client_address, parse_range, select_connector

CFG = testing.config(
    receive_connectors=[
        {"name": "Default Frontend", "role": "frontend", "bindings": ["0.0.0.0:25"]},
        {"name": "Anon Relay", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["192.0.2.10", "198.51.100.0/24"]},
        {"name": "Scanners", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["198.51.100.5-198.51.100.9"]},
        {"name": "Lab v6", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["2001:db8::/64"]},
        {"name": "Off", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["203.0.113.7"], "enabled": False},
    ]
)


def pick(ip: str) -> str | None:
    c = select_connector(CFG.receive_connectors, client_address(ip))
    return c.name if c else None


def test_most_specific_range_wins():
    assert pick("192.0.2.10") == "Anon Relay"
    assert pick("192.0.2.11") == "Default Frontend"
    assert pick("198.51.100.200") == "Anon Relay"
    assert pick("198.51.100.7") == "Scanners"  # 5 addresses beat a /24
    assert pick("2001:db8::1") == "Lab v6"
    assert pick("2001:db9::1") == "Default Frontend"


def test_disabled_connector_is_never_chosen():
    assert pick("203.0.113.7") == "Default Frontend"


def test_ipv4_mapped_ipv6_counts_as_ipv4():
    assert pick("::ffff:192.0.2.10") == "Anon Relay"


def test_no_match():
    only = testing.config(receive_connectors=[{"name": "Lab", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["10.0.0.0/8"]}])
    assert select_connector(only.receive_connectors, ip_address("192.0.2.1")) is None


def test_range_forms_compare_by_size():
    assert parse_range("10.0.0.5-10.0.0.9").size == 5
    assert parse_range("10.0.0.0/24").size == 256
    assert parse_range("10.0.0.1").size == 1
