"""
Brute-force defence for AUTH: failures counted per source IP and per user.

Every failure is answered after a tarpit delay (the protocol waits it).
Past `max_failures_per_source` failures within the window a source is locked
out for `lockout`: its AUTH attempts are refused without looking at the
password, so a right guess during a lockout teaches the attacker nothing.
The same holds per user name past `max_failures_per_user` (set it higher:
a per-user lockout is also something an attacker can inflict on a user).
Pure counting over an injected clock; nothing here sleeps.
"""

from __future__ import annotations

from collections import deque

from gateway.policy.limits import source_key

PRUNE_AT = 10_000


class AuthThrottle:
    def __init__(self, clock, max_per_source: int, max_per_user: int, window: float, lockout: float, ipv6_prefix: int = 64) -> None:
        self.clock = clock
        # An IPv6 source is its network ([limits] ipv6_source_prefix): a host that
        # owns a /64 must not get a fresh failure count with each of its addresses.
        self.ipv6_prefix = ipv6_prefix
        self.max_per_source = max_per_source
        self.max_per_user = max_per_user
        self.window = window
        self.lockout = lockout
        self._failures: dict[tuple[str, str], deque] = {}
        self._locked_until: dict[tuple[str, str], float] = {}
        # Pruning looks at every entry: it runs when the tables reach PRUNE_AT,
        # then only once they have doubled since, so a scan of addresses or user
        # names costs O(1) per failure, not O(n) (it was every failure past 10,000).
        self._prune_at = PRUNE_AT

    def _key_locked(self, key: tuple[str, str], now: float) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._locked_until[key]
            return False
        return True

    def locked(self, source: str, user: str | None = None) -> str | None:
        """Why AUTH is refused right now ("source" or "user"), or None."""
        now = self.clock.seconds()
        if self._key_locked(("ip", source_key(source, self.ipv6_prefix)), now):
            return "source"
        if user is not None and self._key_locked(("user", user.lower()), now):
            return "user"
        return None

    def user_locked(self, user: str) -> bool:
        """Whether this account (or login name) is locked out now."""
        return self._key_locked(("user", user.lower()), self.clock.seconds())

    def failed(self, source: str, user: str | None) -> None:
        now = self.clock.seconds()
        if len(self._failures) + len(self._locked_until) >= self._prune_at:
            self.prune()
        self._count(("ip", source_key(source, self.ipv6_prefix)), self.max_per_source, now)
        if user:
            self._count(("user", user.lower()), self.max_per_user, now)

    def _count(self, key: tuple[str, str], limit: int, now: float) -> None:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        if len(times) >= limit:
            self._locked_until[key] = now + self.lockout
            times.clear()

    def succeeded(self, source: str, user: str) -> None:
        """A good login clears the user's count, not the source's (one good account must not launder a scan)."""
        self._failures.pop(("user", user.lower()), None)

    def prune(self) -> None:
        """Forget expired state; called now and then so an address scan cannot grow memory without end."""
        now = self.clock.seconds()
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[key]
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]
        self._prune_at = max(PRUNE_AT, 2 * (len(self._failures) + len(self._locked_until)))
