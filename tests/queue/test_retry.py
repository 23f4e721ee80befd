"""The retry schedule, expiry and delay-notice timing as pure functions."""

from gateway.queue.retry import RetryPolicy, expiry_reply


def test_quick_retries_first_then_the_long_interval():
    p = RetryPolicy(retry_interval=900, transient_attempts=3, transient_interval=60)
    assert [p.next_attempt(n, 1000) - 1000 for n in range(1, 6)] == [60, 60, 60, 900, 900]


def test_expiry_and_delay_notice():
    p = RetryPolicy(expiration=2 * 86400, delay_notice=4 * 3600)
    assert not p.expired(0, 2 * 86400 - 1) and p.expired(0, 2 * 86400)
    assert not p.delay_notice_due(0, 4 * 3600 - 1, False)
    assert p.delay_notice_due(0, 4 * 3600, False) and not p.delay_notice_due(0, 4 * 3600, True)
    assert not RetryPolicy(delay_notice=None).delay_notice_due(0, 10**9, False)


def test_expiry_reply_keeps_the_last_error():
    assert expiry_reply("451 4.4.0 next hop unreachable") == (
        "550 4.4.7 Message expired: it could not be delivered in time; last error: 451 4.4.0 next hop unreachable"
    )
