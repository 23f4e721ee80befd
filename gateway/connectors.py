"""
Receive connectors: remote IP ranges, bindings and most-specific selection.

Several connectors may listen on one `ip:port`. Exchange picks, for each
connection, the connector whose remote IP ranges contain the client address
most specifically; so do we. Ranges are kept as integer intervals so that a
single IP, a CIDR block and an `a-b` range compare the same way: the range
with fewer addresses is the more specific one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, Protocol, TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Selectable(Protocol):
    """What selection reads of a connector (config.ReceiveConnector, or a test's stand-in)."""

    @property
    def enabled(self) -> bool: ...

    @property
    def remote_ip_ranges(self) -> Sequence[IPRange]: ...


C = TypeVar("C", bound=Selectable)


@dataclass(frozen=True, order=True)
class IPRange:
    """An inclusive interval of addresses of one IP version."""

    version: int
    first: int
    last: int
    text: str = ""

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, address: IPAddress) -> bool:
        return address.version == self.version and self.first <= int(address) <= self.last

    def covers(self, other: IPRange) -> bool:
        return self.version == other.version and self.first <= other.first and other.last <= self.last

    def overlaps(self, other: IPRange) -> bool:
        return self.version == other.version and self.first <= other.last and other.first <= self.last

    def same_interval(self, other: IPRange) -> bool:
        return (self.version, self.first, self.last) == (other.version, other.first, other.last)

    def __str__(self) -> str:
        return self.text


def parse_range(text: str) -> IPRange:
    """`192.0.2.10`, `198.51.100.0/24`, `10.0.0.5-10.0.0.9` or their IPv6 forms."""
    text = text.strip()
    if "-" in text:
        a, _, b = text.partition("-")
        first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        if first.version != last.version:
            raise ValueError(f"{text!r} mixes IPv4 and IPv6")
        if int(first) > int(last):
            raise ValueError(f"{text!r} ends before it starts")
        return IPRange(first.version, int(first), int(last), text)
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        return IPRange(net.version, int(net.network_address), int(net.broadcast_address), text)
    address = ipaddress.ip_address(text)
    return IPRange(address.version, int(address), int(address), text)


ALL_IPV4 = parse_range("0.0.0.0-255.255.255.255")
ALL_IPV6 = parse_range("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")


@lru_cache(maxsize=4096)
def client_address(host: str) -> IPAddress:
    """The client's address as policy sees it: IPv4-mapped IPv6 becomes IPv4. (Cached: the same clients connect over and over.)"""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def best_match(ranges: Iterable[IPRange], address: IPAddress) -> IPRange | None:
    """The smallest range that contains the address, or None."""
    best = None
    for r in ranges:
        if r.contains(address) and (best is None or r.size < best.size):
            best = r
    return best


def select_connector(connectors: Sequence[C], address: IPAddress) -> C | None:
    """
    The enabled connector whose remote ranges hold the address most
    specifically, or None. Config validation guarantees there is no tie.
    """
    winner: C | None = None
    winner_size: int | None = None
    for connector in connectors:
        if not connector.enabled:
            continue
        match = best_match(connector.remote_ip_ranges, address)
        if match is not None and (winner_size is None or match.size < winner_size):
            winner, winner_size = connector, match.size
    return winner


def range_conflicts(connectors: Sequence) -> list[tuple[object, object, str]]:
    """
    Pairs of connectors (sharing a binding) whose ranges make the choice
    ambiguous: identical ranges, or overlap where neither range holds the other.
    """
    out = []
    for i, a in enumerate(connectors):
        for b in connectors[i + 1 :]:
            for ra in a.remote_ip_ranges:
                for rb in b.remote_ip_ranges:
                    if ra.same_interval(rb):
                        out.append((a, b, f"both list the range {ra} (as {rb!s} in {b.name!r})"))
                    elif ra.overlaps(rb) and not (ra.covers(rb) or rb.covers(ra)):
                        out.append((a, b, f"range {ra} overlaps {rb} without containing it"))
    return out


@dataclass(frozen=True)
class Candidate(Generic[C]):
    """One connector's standing for an address: the range that holds it, if any."""

    connector: C
    match: IPRange | None

    @property
    def eligible(self) -> bool:
        return self.connector.enabled and self.match is not None


def explain_selection(connectors: Sequence[C], address: IPAddress) -> tuple[C | None, list[Candidate[C]]]:
    """select_connector, with every connector's standing, for `receive-connector test`."""
    candidates = [Candidate(c, best_match(c.remote_ip_ranges, address)) for c in connectors]
    return select_connector(connectors, address), candidates
