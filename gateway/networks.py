"""
Named lists of networks: `[networks]` in the config.

An admin names the organisation's networks once and refers to them by name
wherever a list of IP ranges goes (a receive connector's remote_ip_ranges),
instead of copying the same ranges into every connector. `internal` is
predefined as the addresses an organisation's own devices use (RFC 1918,
loopback, IPv6 unique local addresses) unless the file sets it: the sample's
port 25 gives the right to send as an authoritative domain only there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.connectors import IPRange, parse_range

INTERNAL = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1", "fc00::/7")
DEFAULT_NETWORKS: dict[str, tuple[IPRange, ...]] = {"internal": tuple(parse_range(r) for r in INTERNAL)}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def parse_networks(section: Mapping[str, Any]) -> tuple[dict[str, tuple[IPRange, ...]], list[tuple[str, str]]]:
    """The named lists of a `[networks]` table over the defaults, and (key, reason) for each problem."""
    networks = dict(DEFAULT_NETWORKS)
    problems = []
    for name, value in section.items():
        if not _NAME.match(name):
            problems.append((name, "a network name is a letter then letters, digits, _ or -"))
            continue
        if not isinstance(value, list) or not value:
            problems.append((name, "must be a non-empty list of IP addresses, CIDR blocks or a-b ranges"))
            continue
        ranges = []
        for i, item in enumerate(value):
            try:
                if not isinstance(item, str):
                    raise ValueError(f"{item!r} is not a string")
                ranges.append(parse_range(item))
            except ValueError as e:
                problems.append((f"{name}[{i}]", f"{item!r} is not an IP address, CIDR block or a-b range ({e})"))
        networks[name] = tuple(ranges)
    return networks, problems


def resolve_ranges(value: Any, networks: Mapping[str, tuple[IPRange, ...]]) -> tuple[IPRange, ...]:
    """One remote_ip_ranges entry: an address, CIDR block or a-b range, or the name of a network list."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP range string")
    try:
        return (parse_range(value),)
    except ValueError as e:
        if value in networks:
            return networks[value]
        if _NAME.match(value):
            raise ValueError(f"{value!r} is not a network named in [networks] (known: {', '.join(sorted(networks))})") from None
        raise ValueError(f"{value!r} is not an IP address, CIDR block or a-b range ({e})") from None
