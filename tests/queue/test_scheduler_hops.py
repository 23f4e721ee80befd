"""
One bad next hop does not stop the others, and a down next hop is probed,
not retried per message (issue 17, items 1 and 2); driven by task.Clock.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from gateway.config import HostPort, SendConnector
from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.nexthop import MAILBOX, NextHop
from gateway.queue import view
from gateway.queue.retry import RetryPolicy
from gateway.queue.scheduler import DeliveryScheduler
from gateway.route.router import Router

ISP = SendConnector("ISP", ("*",), (HostPort("192.0.2.25", 25),))
UNREACHABLE = "451 4.4.0 next hop 192.0.2.25:25 unreachable: 192.0.2.25:25: no reply from server"


class Store:
    """The queue store's part the scheduler uses, counting envelope rewrites."""

    def __init__(self):
        self.updates = 0
        self.removed = []

    def body_file(self, queue_id):
        return f"/nonexistent/{queue_id}"

    def update(self, envelope):
        self.updates += 1
        return succeed(None)

    def remove(self, queue_id, reuse=True):
        self.removed.append(queue_id)


class Mailbox:
    def __init__(self):
        self.delivered = []

    def deliver(self, envelope, recipients, body):
        self.delivered.append(envelope.queue_id)
        return succeed(dict.fromkeys(recipients, (RecipientState.DELIVERED, "250 2.0.0 ok")))


class Blackhole:
    """Accepts TCP and never answers: each attempt ends after the client's greeting timeout, every recipient deferred 4.4.0."""

    def __init__(self, clock, wait=300.0):
        self.clock = clock
        self.wait = wait
        self.calls = 0
        self.in_flight = 0

    def deliver(self, envelope, recipients, body):
        self.calls += 1
        self.in_flight += 1
        d = Deferred()

        def timed_out():
            self.in_flight -= 1
            d.callback(dict.fromkeys(recipients, (RecipientState.PENDING, UNREACHABLE)))

        self.clock.callLater(self.wait, timed_out)
        return d


def message(queue_id, rcpt, received_at=0.0):
    return Envelope(str(queue_id), int(queue_id), f"<{queue_id}@x>", "s@corp.example", (Recipient(rcpt),), received_at, 10)


def build(clock, hop, retry=RetryPolicy(900, 6, 60), max_concurrent=20):
    mailbox = Mailbox()
    router = Router(AcceptedDomains([AcceptedDomain("c", "corp.example")]), (ISP,))
    store = Store()
    scheduler = DeliveryScheduler(store, router, {MAILBOX: mailbox, NextHop.via(ISP): hop}, clock, retry, max_concurrent)
    scheduler.start([])
    return scheduler, mailbox, store


def test_mail_to_a_good_hop_keeps_flowing_while_a_blackhole_hop_holds_messages():
    """
    25 messages to a next hop that never answers, then steady mail to the
    mailbox: every mailbox message is delivered at once, throughout, even
    with the old global limit of 20 attempts.
    """
    clock = Clock()
    blackhole = Blackhole(clock)
    scheduler, mailbox, _store = build(clock, blackhole, max_concurrent=20)
    for i in range(1, 26):
        scheduler.enqueue(message(i, f"u{i}@ext.example"))
    assert blackhole.in_flight == 5  # the hop's initial window, not every delivery slot
    for second in range(0, 600, 10):
        clock.advance(10)
        queue_id = 1000 + second
        scheduler.enqueue(message(queue_id, "a@corp.example"))
        assert mailbox.delivered[-1] == str(queue_id), f"mailbox delivery waited at t={clock.seconds()}"
    assert len(mailbox.delivered) == 60
    # The blackhole's first five timed out at 300 s: its queue went into Retry, one probe since.
    assert blackhole.calls == 6
    assert scheduler.hops.hops["ISP"].status == "Retry"


def test_a_refusing_hop_with_1000_queued_gets_one_attempt_per_retry_interval():
    """1000 messages to a down next hop: a first window of attempts, then one probe per interval; no envelope rewrite for the waiting ones."""
    clock = Clock()
    refusing = Blackhole(clock, wait=0.5)  # refused after half a second
    scheduler, _mailbox, store = build(clock, refusing)
    for i in range(1, 1001):
        scheduler.enqueue(message(i, f"u{i}@ext.example"))
    clock.advance(1)
    assert refusing.calls == 5 and store.updates == 5
    calls_per_interval = []
    for _ in range(10):
        before = refusing.calls
        clock.pump([60] * 15)  # 15 minutes in steps
        calls_per_interval.append(refusing.calls - before)
    # 6 transient tries a minute apart, then every 15 minutes: at most 15 tries in a 15-minute window, whatever the count queued.
    # The hop's own schedule: 6 transient tries a minute apart, then one every 15 minutes, whatever the count queued.
    assert calls_per_interval[0] == 6 and max(calls_per_interval[1:]) == 1
    # One envelope rewrite per attempt made (the first window and the probes); the 990-odd waiting never rewritten.
    assert store.updates == 5 + sum(calls_per_interval)
    rows = {q["Name"]: q for q in view.queues(scheduler, "EX")}
    assert rows["ISP"]["Status"] == "Retry"
    assert rows["ISP"]["MessageCount"] == 1000
    assert rows["ISP"]["LastError"] == UNREACHABLE
    assert rows["ISP"]["NextRetryTime"].startswith("1970-01-01T")


def test_queue_list_shows_the_hop_in_retry_with_its_error_and_next_retry_time():
    clock = Clock()
    refusing = Blackhole(clock, wait=0.0)
    scheduler, _mailbox, _store = build(clock, refusing)
    scheduler.enqueue(message(1, "u@ext.example"))
    clock.advance(0)
    scheduler.enqueue(message(2, "v@ext.example"))
    (row,) = [q for q in view.queues(scheduler, "EX") if q["Name"] == "ISP"]
    assert (row["Status"], row["MessageCount"], row["LastError"], row["NextRetryTime"]) == (
        "Retry", 2, UNREACHABLE, "1970-01-01T00:01:00.000Z",
    )
    by_id = {m["Identity"]: m["Status"] for m in view.messages(scheduler)}
    assert by_id == {"1": "Retry", "2": "Retry"}
    # `queue retry ISP`: both now, the hop probed at once.
    assert scheduler.retry_now("ISP") == 2
    assert refusing.calls == 2


def test_a_hop_that_answers_again_drains_its_queue():
    clock = Clock()
    hop = Blackhole(clock, wait=0.5)
    scheduler, _mailbox, _store = build(clock, hop)
    for i in range(1, 41):
        scheduler.enqueue(message(i, f"u{i}@ext.example"))
    clock.advance(1)
    delivered = []
    hop.deliver = lambda envelope, recipients, body: (
        delivered.append(envelope.queue_id) or succeed(dict.fromkeys(recipients, (RecipientState.DELIVERED, "250 ok")))
    )
    clock.advance(60)
    assert len(delivered) == 40 and scheduler.messages == {}
    # Ready again, and empty: gone from `queue list`.
    assert scheduler.hops.hops["ISP"].status == "Ready" and view.queues(scheduler, "EX") == []


def test_messages_waiting_behind_a_down_hop_still_expire_with_an_ndr():
    """Never attempted while the hop is down, a message still expires on time: 4.4.7 and a non-delivery report."""
    clock = Clock()
    refusing = Blackhole(clock, wait=0.0)
    scheduler, _mailbox, _store = build(clock, refusing, retry=RetryPolicy(900, 0, 60, expiration=3600, delay_notice=None))
    notices = []

    class Notifier:
        def notify(self, kind, envelope, recipients, *args):
            notices.append((kind, envelope.queue_id, [r.last_reply[:9] for r in recipients]))

    scheduler.notifier = Notifier()
    for i in range(1, 11):
        scheduler.enqueue(message(i, f"u{i}@ext.example"))
    clock.pump([60] * 70)
    # The first window of five, then one probe at 15, 30, 45 and 60 minutes.
    assert refusing.calls == 9
    assert sorted(n[1] for n in notices) == sorted(str(i) for i in range(1, 11))
    assert {n[0] for n in notices} == {"failed"} and {r for n in notices for r in n[2]} == {"550 4.4.7"}
    assert scheduler.messages == {}


def test_a_suspended_queue_holds_its_messages_without_attempts_until_resumed():
    """`queue suspend ISP`: its messages wait (no attempt, no rewrite) while the mailbox's go; resume sends them."""
    clock = Clock()
    hop = Blackhole(clock, wait=0.0)
    scheduler, mailbox, store = build(clock, hop)
    scheduler.suspended.add("ISP")
    for i in range(1, 4):
        scheduler.enqueue(message(i, f"u{i}@ext.example"))
    scheduler.enqueue(message(9, "a@corp.example"))
    clock.advance(3600)
    assert hop.calls == 0 and store.updates == 0 and mailbox.delivered == ["9"]
    assert scheduler.idle
    rows = {q["Name"]: q for q in view.queues(scheduler, "EX")}
    assert (rows["ISP"]["Status"], rows["ISP"]["MessageCount"]) == ("Suspended", 3)
    scheduler.suspended.discard("ISP")
    assert scheduler.retry_now("ISP") == 3
    assert hop.calls == 3
