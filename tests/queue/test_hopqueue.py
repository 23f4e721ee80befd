"""Per-next-hop queues (gateway/queue/hopqueue.py): the verdict on a hop, its window, its Retry state, with task.Clock."""

from twisted.internet.task import Clock

from gateway.queue.hopqueue import KEEP_IDLE, HopQueues, hop_reached
from gateway.queue.retry import RetryPolicy


def test_only_network_and_routing_deferrals_say_a_hop_is_down():
    """4.4.x on every recipient: unreachable; a local 4.3.x tells nothing; any other reply means the hop answered."""
    assert hop_reached(["451 4.4.0 next hop h unreachable: Connection refused"]) is False
    assert hop_reached(["451 4.4.0 x", "451 4.4.3 DNS lookup of MX for d failed"]) is False
    assert hop_reached(["451 4.3.0 mailbox write failed: No space left on device"]) is None
    assert hop_reached(["451 4.4.0 x", "451 4.3.0 y"]) is None
    assert hop_reached(["451 4.7.1 greylisted, try later"]) is True
    assert hop_reached(["250 2.0.0 ok"]) is True
    assert hop_reached(["550 5.1.1 unknown", "451 4.4.0 x"]) is True
    assert hop_reached([]) is None


def queues(clock, **kw):
    woken = []
    hops = HopQueues(clock, RetryPolicy(900, 2, 60), wake=lambda: woken.append(clock.seconds()), **kw)
    return hops, woken


def test_a_hop_starts_at_its_initial_window_and_grows_to_its_limit():
    """Slow start (Postfix's initial_destination_concurrency): 5 at once, one more per attempt that reached the hop, up to the limit."""
    clock = Clock()
    hops, _ = queues(clock, initial=5)
    for i in range(30):
        hops.add("Internet", str(i), limit=8)
    started = [hops.next() for _ in range(6)]
    assert [s[1] for s in started[:5]] == ["0", "1", "2", "3", "4"] and started[5] is None
    for _ in range(3):
        hops.observe("Internet", True)
        hops.release("Internet")
    assert hops.hops["Internet"].window == 8
    assert [hops.next() is not None for _ in range(7)] == [True] * 6 + [False]


def test_hops_take_turns_and_one_hop_at_its_limit_does_not_stop_another():
    """Round robin over the hops that may start: a full hop is skipped, the next one's messages go."""
    clock = Clock()
    hops, _ = queues(clock, initial=2)
    for i in range(5):
        hops.add("Blackhole", f"b{i}")
        hops.add("Mailbox Delivery", f"m{i}")
    picked = [hops.next() for _ in range(4)]
    assert sorted(picked) == [("Blackhole", "b0"), ("Blackhole", "b1"), ("Mailbox Delivery", "m0"), ("Mailbox Delivery", "m1")]
    hops.observe("Mailbox Delivery", True)
    hops.release("Mailbox Delivery")
    assert hops.next() == ("Mailbox Delivery", "m2")


def test_a_down_hop_waits_for_its_retry_time_then_sends_one_probe():
    """Unreachable: Retry until the next try on the retry schedule counted per hop; then one probe, the rest wait."""
    clock = Clock()
    hops, woken = queues(clock)
    for i in range(100):
        hops.add("ISP", str(i))
    assert hops.next() == ("ISP", "0")
    assert hops.observe("ISP", False, "451 4.4.0 next hop ISP unreachable: Connection refused") is True
    hops.release("ISP")
    hop = hops.hops["ISP"]
    assert (hop.status, hop.retry_at, hop.last_error) == ("Retry", 60.0, "451 4.4.0 next hop ISP unreachable: Connection refused")
    assert hops.next() is None
    clock.advance(60)
    assert woken == [60.0]
    assert hops.next() == ("ISP", "1")
    assert hops.next() is None  # one probe at a time
    hops.observe("ISP", False, "451 4.4.0 refused")
    hops.release("ISP")
    assert hop.retry_at == 120.0
    clock.advance(60)
    hops.next()
    hops.observe("ISP", False, "451 4.4.0 refused")
    hops.release("ISP")
    # Past the transient attempts: the long interval.
    assert hop.retry_at == 120.0 + 900
    clock.advance(900)
    assert hops.next() == ("ISP", "3")
    hops.observe("ISP", True)
    hops.release("ISP")
    assert (hop.status, hop.last_error, hop.failures) == ("Ready", "", 0)
    # Ready again: the window it fell back to (5), one more for the probe that answered.
    assert [hops.next() is not None for _ in range(7)] == [True] * 6 + [False]


def test_failures_of_attempts_already_in_flight_do_not_push_the_retry_time():
    """Five attempts were out when the hop went down: the first failure sets Retry, the other four leave it as is."""
    clock = Clock()
    hops, _ = queues(clock)
    for i in range(10):
        hops.add("ISP", str(i))
    for _ in range(5):
        hops.next()
    for _ in range(5):
        clock.advance(1)
        hops.observe("ISP", False, "451 4.4.0 timed out")
        hops.release("ISP")
    assert hops.hops["ISP"].retry_at == 61.0 and hops.hops["ISP"].failures == 1


def test_an_admin_retry_releases_a_hop_at_once():
    clock = Clock()
    hops, _ = queues(clock)
    hops.add("ISP", "1")
    hops.add("ISP", "2")
    hops.next()
    hops.observe("ISP", False, "451 4.4.0 refused")
    hops.release("ISP")
    assert hops.next() is None
    hops.retry_now("ISP")
    assert hops.next() == ("ISP", "2")
    assert clock.getDelayedCalls() == []


def test_a_probe_that_told_nothing_waits_a_round_before_the_next():
    """The probe's message was removed or its attempt broke: no burst of probes, the next one comes a transient interval later."""
    clock = Clock()
    hops, _ = queues(clock)
    for i in range(3):
        hops.add("ISP", str(i))
    hops.next()
    hops.observe("ISP", False, "451 4.4.0 refused")
    hops.release("ISP")
    clock.advance(60)
    assert hops.next() == ("ISP", "1")
    hops.release("ISP")
    assert hops.next() is None and hops.hops["ISP"].retry_at == 120.0


def test_ids_no_longer_valid_are_skipped():
    clock = Clock()
    hops, _ = queues(clock)
    for i in range(3):
        hops.add("ISP", str(i))
    assert hops.next(lambda q: q != "0") == ("ISP", "1")
    hops.drop("2")
    assert hops.next() is None and hops.empty


def test_idle_ready_hops_are_forgotten_and_an_empty_hop_in_retry_at_its_retry_time():
    """MX routing meets a hop per destination domain: one with nothing waiting or in flight is not kept (nor scanned)."""
    clock = Clock()
    hops, _ = queues(clock)
    for i in range(1000):
        hops.add(f"d{i}.example", str(i))
        name, _ = hops.next()
        hops.observe(name, True)
        hops.release(name)
    # The last KEEP_IDLE are kept (with their windows), no more.
    assert len(hops.hops) == KEEP_IDLE
    hops.add("down.example", "x")
    hops.next()
    hops.observe("down.example", False, "451 4.4.0 refused")
    hops.release("down.example")
    assert hops.in_retry("down.example")
    clock.advance(60)
    assert "down.example" not in hops.hops and len(hops.hops) == KEEP_IDLE and clock.getDelayedCalls() == []
