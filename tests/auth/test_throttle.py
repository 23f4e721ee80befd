"""The AUTH throttle on task.Clock: lockouts per source and per user, and their end."""

from twisted.internet.task import Clock

from gateway.auth.throttle import AuthThrottle


def make(**kw):
    clock = Clock()
    clock.advance(1000)
    args = {"max_per_source": 3, "max_per_user": 5, "window": 60.0, "lockout": 300.0}
    args.update(kw)
    return clock, AuthThrottle(clock, **args)


def test_a_source_is_locked_out_after_its_limit_then_released():
    clock, t = make()
    for _ in range(2):
        t.failed("192.0.2.1", "scanner01")
    assert t.locked("192.0.2.1") is None
    t.failed("192.0.2.1", "scanner01")
    assert t.locked("192.0.2.1") == "source"
    assert t.locked("192.0.2.2") is None
    clock.advance(299)
    assert t.locked("192.0.2.1") == "source"
    clock.advance(1)
    assert t.locked("192.0.2.1") is None


def test_failures_outside_the_window_do_not_add_up():
    clock, t = make()
    for _ in range(5):
        t.failed("192.0.2.1", None)
        clock.advance(31)
    assert t.locked("192.0.2.1") is None


def test_a_user_is_locked_out_across_sources():
    _clock, t = make()
    for i in range(5):
        t.failed(f"192.0.2.{i}", "Scanner01")
    assert t.locked("198.51.100.9", "scanner01") == "user"
    assert t.locked("198.51.100.9", "printer") is None


def test_a_good_login_clears_the_user_count_not_the_source_count():
    _clock, t = make()
    for _ in range(2):
        t.failed("192.0.2.1", "scanner01")
    t.succeeded("192.0.2.1", "scanner01")
    t.failed("192.0.2.1", "other")
    assert t.locked("192.0.2.1") == "source"


def test_prune_forgets_expired_state():
    clock, t = make()
    t.failed("192.0.2.1", "u")
    clock.advance(3600)
    t.prune()
    assert t._failures == {} and t._locked_until == {}
