"""
Per-connector connection and message-rate limits, counted per client source.

Exchange's MaxInboundConnection, MaxInboundConnectionPerSource and
MessageRateLimit: counts live here, keyed by connector name, so a reload
that keeps a connector keeps its counts. All decisions are pure functions
of the counts and the clock.

A source is the client's address, or for IPv6 its network of
`ipv6_prefix` bits ([limits] ipv6_source_prefix, /64 by default): one host
is normally given a whole /64, and counting each of its 2**64 addresses
apart would make the per-source limits no limit at all.

Every table here is keyed by what clients choose, so each is bounded: open
connections by the connection limits, the message-rate table by pruning the
sources idle for a window (amortised: a prune when the table has doubled
since the last one, so a scan of addresses costs O(1) per message).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict, deque
from functools import lru_cache

from gateway.errors import Reply, SMTPReply

WINDOW = 60.0
# The message-rate table is pruned when it reaches this size, then each time it doubles.
PRUNE_AT = 1024
DEFAULT_JUNK_COMMAND_LIMIT = 100


@lru_cache(maxsize=4096)
def source_key(address: str, ipv6_prefix: int = 64) -> str:
    """What the per-source limits count: the address, or an IPv6 address's /ipv6_prefix network."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))


class ConnectionLimits:
    def __init__(self, ipv6_prefix: int = 64, junk_command_limit: int = DEFAULT_JUNK_COMMAND_LIMIT) -> None:
        self.ipv6_prefix = ipv6_prefix
        # Read by each session (gateway/smtpd/protocol.py): NOOP/RSET/VRFY/HELP/unknown between messages.
        self.junk_command_limit = junk_command_limit
        self._open: dict[str, int] = defaultdict(int)
        self._per_source: dict[tuple[str, str], int] = defaultdict(int)
        self._messages: dict[tuple[str, str], deque] = {}
        self._prune_at = PRUNE_AT

    def source(self, address: str) -> str:
        return source_key(address, self.ipv6_prefix)

    def admit(self, connector, source: str) -> SMTPReply | None:
        """Count a new connection, or say why it is refused (it is then not counted)."""
        name = connector.name
        if connector.max_inbound_connection is not None and self._open[name] >= connector.max_inbound_connection:
            return Reply.TOO_MANY_CONNECTIONS
        limit = connector.max_inbound_connection_per_source
        key = (name, self.source(source))
        if limit is not None and self._per_source[key] >= limit:
            return Reply.TOO_MANY_CONNECTIONS_FROM_SOURCE
        self._open[name] += 1
        self._per_source[key] += 1
        return None

    def release(self, connector, source: str) -> None:
        name = connector.name
        self._open[name] -= 1
        key = (name, self.source(source))
        self._per_source[key] -= 1
        if self._per_source[key] <= 0:
            del self._per_source[key]

    def message(self, connector, source: str, now: float) -> bool:
        """Count a message from this source; False if it is over MessageRateLimit (per minute)."""
        limit = connector.message_rate_limit
        if limit is None:
            return True
        if len(self._messages) >= self._prune_at:
            self.prune(now)
        key = (connector.name, source if source.startswith("user:") else self.source(source))
        times = self._messages.setdefault(key, deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True

    def prune(self, now: float) -> None:
        """Forget the sources with no message in the last window; the next prune waits until the table doubles."""
        for key in [k for k, times in self._messages.items() if not times or times[-1] <= now - WINDOW]:
            del self._messages[key]
        self._prune_at = max(PRUNE_AT, 2 * len(self._messages))

    @property
    def tracked_sources(self) -> int:
        """How many sources the message-rate table holds (for tests and metrics)."""
        return len(self._messages)
