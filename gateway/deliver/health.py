"""
Which next-hop addresses are worth trying first.

An address that refused, timed out or greeted with 4xx is marked bad for a
while (`penalty`, default 5 minutes) and tried only after the healthy ones;
the addresses of one name rotate across connections, so the hosts behind a
round-robin name share the load. Shared by every pool of a process, so a
smart host found dead by one delivery is skipped by the next. Pure state
over an injected clock.
"""

from __future__ import annotations

from gateway.config.values import HostPort

PENALTY = 300.0


class AddressHealth:
    def __init__(self, clock, penalty: float = PENALTY) -> None:
        self.clock = clock
        self.penalty = penalty
        self._bad_until: dict[HostPort, float] = {}
        self._turn: dict[tuple, int] = {}
        # Every address tried so far, for the metrics (bounded: next hops, not clients).
        self._seen: set[HostPort] = set()

    def mark_bad(self, address: HostPort) -> None:
        self._seen.add(address)
        self._bad_until[address] = self.clock.seconds() + self.penalty

    def mark_good(self, address: HostPort) -> None:
        self._seen.add(address)
        self._bad_until.pop(address, None)

    def known(self) -> list[tuple[HostPort, bool]]:
        """Each address tried so far, and whether it is usable now."""
        return [(a, not self.is_bad(a)) for a in sorted(self._seen, key=str)]

    def is_bad(self, address: HostPort) -> bool:
        until = self._bad_until.get(address)
        if until is None:
            return False
        if self.clock.seconds() >= until:
            del self._bad_until[address]
            return False
        return True

    def order(self, groups: list[list[HostPort]]) -> list[HostPort]:
        """Group order kept (MX preference, smart host order); inside a group, rotate; bad addresses last."""
        ordered = []
        for group in groups:
            if len(group) > 1:
                key = tuple(group)
                turn = self._turn.get(key, 0)
                self._turn[key] = (turn + 1) % len(group)
                group = group[turn:] + group[:turn]
            ordered += group
        return [a for a in ordered if not self.is_bad(a)] + [a for a in ordered if self.is_bad(a)]
