"""
Per-connector connection and message-rate limits, counted per client address.

Exchange's MaxInboundConnection, MaxInboundConnectionPerSource and
MessageRateLimit: counts live here, keyed by connector name, so a reload
that keeps a connector keeps its counts. All decisions are pure functions
of the counts and the clock.
"""

from __future__ import annotations

from collections import defaultdict, deque

from gateway.errors import Reply, SMTPReply

WINDOW = 60.0


class ConnectionLimits:
    def __init__(self) -> None:
        self._open: dict[str, int] = defaultdict(int)
        self._per_source: dict[tuple[str, str], int] = defaultdict(int)
        self._messages: dict[tuple[str, str], deque] = {}

    def admit(self, connector, source: str) -> SMTPReply | None:
        """Count a new connection, or say why it is refused (it is then not counted)."""
        name = connector.name
        if connector.max_inbound_connection is not None and self._open[name] >= connector.max_inbound_connection:
            return Reply.TOO_MANY_CONNECTIONS
        limit = connector.max_inbound_connection_per_source
        if limit is not None and self._per_source[(name, source)] >= limit:
            return Reply.TOO_MANY_CONNECTIONS_FROM_SOURCE
        self._open[name] += 1
        self._per_source[(name, source)] += 1
        return None

    def release(self, connector, source: str) -> None:
        name = connector.name
        self._open[name] -= 1
        key = (name, source)
        self._per_source[key] -= 1
        if self._per_source[key] <= 0:
            del self._per_source[key]

    def message(self, connector, source: str, now: float) -> bool:
        """Count a message from this source; False if it is over MessageRateLimit (per minute)."""
        limit = connector.message_rate_limit
        if limit is None:
            return True
        times = self._messages.setdefault((connector.name, source), deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True
