"""
A limit on the notices (non-delivery and delay reports) the hub sends to
any one sender domain per hour.

Backscatter is mail the gateway accepted from a forged sender and then
bounced to the innocent owner of that address. Recipient validation at RCPT
stops most of it; what still fails later (a next hop refusing, a message
expiring) would otherwise let a flood from forged senders in one domain
turn the gateway into a source of bounces towards it. Past the limit a
notice is not sent; the failure is still in the tracking log and the
process log says which notice was held back. The table of domains is
bounded (oldest forgotten first), so forged sender domains cannot grow it.
"""

from __future__ import annotations

from collections import OrderedDict, deque

WINDOW = 3600.0
MAX_DOMAINS = 10_000


class NoticeLimit:
    def __init__(self, clock, per_hour: int | None, max_domains: int = MAX_DOMAINS) -> None:
        self.clock = clock
        self.per_hour = per_hour
        self.max_domains = max_domains
        self._sent: OrderedDict[str, deque] = OrderedDict()

    def allow(self, sender: str) -> bool:
        """Count a notice to `sender`; False if its domain already had `per_hour` in the last hour."""
        if self.per_hour is None:
            return True
        domain = sender.rpartition("@")[2].lower()
        now = self.clock.seconds()
        times = self._sent.pop(domain, None)
        if times is None:
            times = deque()
        while times and times[0] <= now - WINDOW:
            times.popleft()
        allowed = len(times) < self.per_hour
        if allowed:
            times.append(now)
        if times:
            self._sent[domain] = times
            while len(self._sent) > self.max_domains:
                self._sent.popitem(last=False)
        return allowed
