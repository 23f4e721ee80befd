"""
Attack: a password spray from many addresses with many user names. Past
10,000 tracked entries the AUTH throttle pruned its whole table on every
failure (O(n) each), so the spray made every AUTH failure cost a scan of
the table. Now a prune happens when the table has doubled since the last.
"""

from twisted.internet.task import Clock

from gateway.auth import throttle
from gateway.auth.throttle import AuthThrottle


def test_a_spray_within_the_window_prunes_rarely_and_lockouts_still_hold(monkeypatch):
    clock = Clock()
    clock.advance(1000)
    t = AuthThrottle(clock, max_per_source=3, max_per_user=5, window=600.0, lockout=300.0)
    prunes = []
    real = t.prune
    monkeypatch.setattr(t, "prune", lambda: (prunes.append(1), real())[1])
    for n in range(40_000):
        t.failed(f"10.0.{n >> 8 & 255}.{n & 255}" if n % 2 else "192.0.2.9", f"user{n}")
    # 40,000 failures, every entry still inside the window: a handful of prunes, not 30,000.
    assert len(prunes) <= 4
    assert t.locked("192.0.2.9") == "source"


def test_expired_entries_are_forgotten(monkeypatch):
    monkeypatch.setattr(throttle, "PRUNE_AT", 100)
    clock = Clock()
    t = AuthThrottle(clock, max_per_source=3, max_per_user=5, window=60.0, lockout=300.0)
    for n in range(1000):
        clock.advance(1)
        t.failed(f"10.0.{n >> 8}.{n & 255}", None)
    assert len(t._failures) <= 200  # only about the last window's sources, plus the prune's slack
