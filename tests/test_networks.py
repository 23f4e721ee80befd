"""[networks]: named lists of ranges, and connectors that refer to them by name."""

import pytest

from gateway import testing
from gateway.config import ConfigError
from gateway.networks import DEFAULT_NETWORKS, parse_networks, resolve_ranges


def test_internal_is_predefined_as_private_loopback_and_ula():
    assert [str(r) for r in DEFAULT_NETWORKS["internal"]] == [
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1", "fc00::/7"
    ]


def test_a_section_adds_lists_and_may_narrow_internal():
    networks, problems = parse_networks({"internal": ["10.20.0.0/16"], "printers": ["10.20.5.0/24", "10.20.6.7"]})
    assert problems == []
    assert [str(r) for r in networks["internal"]] == ["10.20.0.0/16"]
    assert [str(r) for r in resolve_ranges("printers", networks)] == ["10.20.5.0/24", "10.20.6.7"]
    assert [str(r) for r in resolve_ranges("192.0.2.1", networks)] == ["192.0.2.1"]


def test_connectors_list_names_and_mistakes_are_named():
    cfg = testing.config(
        networks={"printers": ["10.20.5.0/24"]},
        receive_connectors=[
            {"name": "Printers", "role": "frontend", "bindings": ["127.0.0.1:2025"], "remote_ip_ranges": ["printers", "192.0.2.9"],
             "permission_groups": ["AnonymousUsers"]},
            {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["internal"],
             "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]},
        ],
    )
    assert [str(r) for r in cfg.receive_connectors[0].remote_ip_ranges] == ["10.20.5.0/24", "192.0.2.9"]
    assert len(cfg.receive_connectors[1].remote_ip_ranges) == 6
    with pytest.raises(ConfigError) as e:
        testing.config(networks={"bad name": ["10.0.0.0/8"], "office": ["10.0.0.0/33"], "empty": []}, receive_connectors=[
            {"name": "X", "role": "frontend", "bindings": ["127.0.0.1:2025"], "remote_ip_ranges": ["ofice"]},
        ])
    found = [str(p) for p in e.value.problems]
    assert found[0] == "test.toml: networks.bad name: a network name is a letter then letters, digits, _ or -"
    assert found[1].startswith("test.toml: networks.office[0]: '10.0.0.0/33' is not an IP address, CIDR block or a-b range (")
    assert found[2:] == [
        "test.toml: networks.empty: must be a non-empty list of IP addresses, CIDR blocks or a-b ranges",
        ("test.toml: receive_connectors[0] (\"X\").remote_ip_ranges[0]: 'ofice' is not a network named in [networks]"
         " (known: internal, office)"),
        "test.toml: receive_connectors[0] (\"X\").remote_ip_ranges: an empty list would serve no client",
    ]
