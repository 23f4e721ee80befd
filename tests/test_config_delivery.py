"""[queue] settings for per-next-hop concurrency and the delivery client's per-phase timeouts (issue 17)."""

import pytest

from gateway import testing
from gateway.config import ConfigError
from gateway.deliver.timeouts import PhaseTimeouts


def test_defaults_are_postfix_s():
    q = testing.config().queue
    assert (q.max_concurrent_deliveries, q.max_deliveries_per_next_hop) == (100, 20)
    assert q.delivery_timeouts() == PhaseTimeouts(300, 300, 300, 300, 120, 600, 300, 180)


def test_timeouts_and_limits_are_read():
    q = testing.config(queue={
        "max_deliveries_per_next_hop": 4, "greeting_timeout": "30s", "helo_timeout": "1m", "mail_timeout": "45s",
        "rcpt_timeout": "40s", "data_init_timeout": "20s", "data_done_timeout": "5m", "data_transfer_timeout": "90s",
    }).queue
    assert q.max_deliveries_per_next_hop == 4
    t = q.delivery_timeouts()
    assert (t.greeting, t.helo, t.mail, t.rcpt, t.data_init, t.data_done, t.data_xfer) == (30, 60, 45, 40, 20, 300, 90)


def test_a_zero_timeout_or_limit_is_an_error_naming_the_key():
    with pytest.raises(ConfigError) as e:
        testing.config(queue={"greeting_timeout": "0s", "max_deliveries_per_next_hop": 0})
    keys = sorted(p.key for p in e.value.problems)
    assert keys == ["queue.greeting_timeout", "queue.max_deliveries_per_next_hop"]
    assert "'0s' is not a duration above zero" in str(e.value)
