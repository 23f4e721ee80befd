"""Delivery attempts and the fixed retry, driven by task.Clock."""

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.nexthop import MAILBOX
from gateway.queue.format import decode_envelope
from gateway.queue.retry import RetryPolicy
from gateway.queue.scheduler import DeliveryScheduler
from gateway.queue.store import QueueStore, body_bytes, read_trailer
from gateway.route.router import Router

BODY = b"Subject: t\r\n\r\nx\r\n"


class Mailbox:
    def __init__(self):
        self.outcomes = []  # one dict per attempt
        self.calls = []

    def deliver(self, envelope, recipients, body):
        with body.open() as f:
            self.calls.append((envelope.queue_id, list(recipients), f.read()))
        outcome = self.outcomes.pop(0)
        return succeed({r: outcome[r] for r in recipients})


def setup(tmp_path):
    store = QueueStore(tmp_path / "q", lambda f, *a: succeed(f(*a)))
    store.prepare()
    clock = Clock()
    mailbox = Mailbox()
    router = Router(AcceptedDomains([AcceptedDomain("c", "corp.example")]))
    scheduler = DeliveryScheduler(store, router, {MAILBOX: mailbox}, clock, RetryPolicy(60, 0, 60), max_concurrent=5)
    e = store.create("42")
    e.write(BODY)
    env = Envelope("42", 42, "<m@x>", "s@x", (Recipient("a@corp.example"), Recipient("b@corp.example")), 0.0, len(BODY))
    store.commit(e, env)
    return store, clock, mailbox, scheduler, env


def test_delivered_message_leaves_the_queue(tmp_path):
    store, _clock, mailbox, scheduler, env = setup(tmp_path)
    ok = (RecipientState.DELIVERED, "250 ok")
    mailbox.outcomes = [{"a@corp.example": ok, "b@corp.example": ok}]
    scheduler.start([env])
    assert mailbox.calls == [("42", ["a@corp.example", "b@corp.example"], BODY)]
    assert not store.exists("42")
    assert scheduler.idle
    # Its file is kept, retired, for the next spare (a zeroed footer: no message in it).
    assert store.body_path("42").exists()


def test_an_admin_removal_during_an_attempt_deletes_the_file_the_attempt_may_still_read(tmp_path):
    """A file reused as a spare would be written over under a delivery still streaming it: removed by an admin, it is deleted."""
    from twisted.internet.defer import Deferred

    store, _clock, mailbox, scheduler, env = setup(tmp_path)
    pending = Deferred()
    mailbox.deliver = lambda envelope, recipients, body: pending
    scheduler.start([env])
    assert "42" in scheduler.in_delivery
    scheduler.remove("42", with_ndr=False)
    assert not store.body_path("42").exists() and not store.exists("42")
    pending.callback({"a@corp.example": (RecipientState.DELIVERED, "250 ok"), "b@corp.example": (RecipientState.DELIVERED, "250 ok")})
    assert scheduler.idle and not store.body_path("42").exists()


def _next_turn(clock):
    """Run what the reactor would run at the top of its next turn: the calls due now, not those they add."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


def test_a_just_acknowledged_message_waits_two_reactor_turns(tmp_path):
    """Its 250 is written in the next turn's poll pass: the attempt starts in the turn after, once for a batch."""
    store, clock, mailbox, scheduler, env = setup(tmp_path)
    ok = (RecipientState.DELIVERED, "250 ok")
    mailbox.outcomes = [{"a@corp.example": ok, "b@corp.example": ok}] * 2
    scheduler.start([])
    second = Envelope(**{**env.__dict__, "queue_id": "43", "internal_id": 43})
    e = store.create("43")
    e.write(BODY)
    store.commit(e, second)
    scheduler.enqueue(env, BODY, just_acknowledged=True)
    scheduler.enqueue(second, BODY, just_acknowledged=True)
    assert "42" in scheduler.messages and mailbox.calls == []
    assert len(clock.getDelayedCalls()) == 1
    _next_turn(clock)
    assert mailbox.calls == []
    _next_turn(clock)
    assert [c[0] for c in mailbox.calls] == ["42", "43"]
    assert clock.getDelayedCalls() == []


def test_stopping_cancels_a_pending_first_attempt(tmp_path):
    store, clock, mailbox, scheduler, env = setup(tmp_path)
    scheduler.start([])
    scheduler.enqueue(env, BODY, just_acknowledged=True)
    scheduler.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(1)
    assert mailbox.calls == [] and store.exists("42")


def test_deferred_recipient_alone_is_retried_after_the_interval(tmp_path):
    """One delivered, one 4xx: only the second is retried, 60 s later, with state on disk meanwhile."""
    store, clock, mailbox, scheduler, env = setup(tmp_path)
    mailbox.outcomes = [
        {"a@corp.example": (RecipientState.DELIVERED, "250 ok"), "b@corp.example": (RecipientState.PENDING, "451 busy")},
        {"b@corp.example": (RecipientState.DELIVERED, "250 ok")},
    ]
    scheduler.start([env])
    (on_disk,) = QueueStore(tmp_path / "q", None).recover()
    assert [(r.address, r.state, r.last_reply) for r in on_disk.recipients] == [
        ("a@corp.example", RecipientState.DELIVERED, "250 ok"),
        ("b@corp.example", RecipientState.PENDING, "451 busy"),
    ]
    clock.advance(59)
    assert len(mailbox.calls) == 1
    clock.advance(1)
    assert mailbox.calls[1][:2] == ("42", ["b@corp.example"])
    assert not store.exists("42")


def test_recovered_message_waits_for_its_next_attempt(tmp_path):
    _store, clock, mailbox, scheduler, env = setup(tmp_path)
    clock.advance(100)
    later = Envelope(**{**env.__dict__, "next_attempt": 130.0})
    mailbox.outcomes = [{"a@corp.example": (RecipientState.DELIVERED, "250"), "b@corp.example": (RecipientState.DELIVERED, "250")}]
    scheduler.start([later])
    assert mailbox.calls == []
    clock.advance(30)
    assert len(mailbox.calls) == 1


def test_unroutable_recipient_fails_without_a_delivery_call_and_is_kept(tmp_path):
    """A recipient that fails for good is not silently dropped: the message waits in failed/."""
    store, _clock, mailbox, scheduler, _ = setup(tmp_path)
    e = store.create("43")
    e.write(BODY)
    env = Envelope("43", 43, "<m@x>", "s@x", (Recipient("z@gone.example"),), 0.0, len(BODY))
    store.commit(e, env)
    scheduler.start([env])
    assert mailbox.calls == [] and not store.exists("43")
    kept = decode_envelope((tmp_path / "q" / "failed" / "43.json").read_bytes())
    assert [(r.state, r.last_reply) for r in kept.recipients] == [
        (RecipientState.FAILED, "550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain")
    ]
    assert body_bytes(tmp_path / "q" / "failed" / "43.eml", read_trailer(tmp_path / "q" / "failed" / "43.eml")[1]) == BODY


def test_first_attempt_body_from_memory_within_a_budget(tmp_path, monkeypatch):
    """A just-queued body is handed over from memory, but only within the cache budget."""
    from gateway.queue import scheduler as scheduler_module

    _store, _clock, mailbox, scheduler, env = setup(tmp_path)
    monkeypatch.setattr(scheduler_module, "BODY_CACHE_BYTES", 10)
    scheduler._running = True
    seen = []
    mailbox.deliver = lambda e, rcpts, body: (seen.append(body.data), succeed(dict.fromkeys(rcpts, (RecipientState.DELIVERED, "250"))))[1]
    scheduler.max_concurrent = 0  # hold the attempts while bodies are offered
    scheduler.enqueue(env, b"12345")
    scheduler.enqueue(Envelope(**{**env.__dict__, "queue_id": "43"}), b"too long for what is left")
    assert scheduler._body_bytes == 5
    scheduler.max_concurrent = 5
    scheduler._pump()
    assert seen[0] == b"12345" and seen[1] is None
    assert scheduler._body_bytes == 0


class Notices:
    def __init__(self):
        self.sent = []

    def notify(self, kind, envelope, recipients, retry_until=None):
        self.sent.append((kind, envelope.queue_id, [r.address for r in recipients], [r.last_reply for r in recipients]))
        return succeed(None)


def with_notices(tmp_path, policy):
    store, clock, mailbox, scheduler, env = setup(tmp_path)
    scheduler.retry = policy
    scheduler.notifier = Notices()
    return store, clock, mailbox, scheduler, env


def test_a_permanent_failure_is_reported_once_and_the_message_leaves(tmp_path):
    store, clock, mailbox, scheduler, env = with_notices(tmp_path, RetryPolicy(60, 0, 60))
    mailbox.outcomes = [
        {"a@corp.example": (RecipientState.FAILED, "550 5.1.1 unknown"), "b@corp.example": (RecipientState.PENDING, "451 busy")},
        {"b@corp.example": (RecipientState.DELIVERED, "250 ok")},
    ]
    scheduler.start([env])
    assert scheduler.notifier.sent == [("failed", "42", ["a@corp.example"], ["550 5.1.1 unknown"])]
    clock.advance(60)
    assert scheduler.notifier.sent == [("failed", "42", ["a@corp.example"], ["550 5.1.1 unknown"])]
    assert not store.exists("42") and not (store.failed_directory / "42.json").exists()


def test_quick_retries_then_delay_notice_once_then_expiry_with_ndr(tmp_path):
    policy = RetryPolicy(retry_interval=3600, transient_attempts=2, transient_interval=60, expiration=6 * 3600, delay_notice=2 * 3600)
    store, clock, mailbox, scheduler, env = with_notices(tmp_path, policy)
    busy = {"a@corp.example": (RecipientState.PENDING, "451 busy"), "b@corp.example": (RecipientState.PENDING, "451 busy")}
    mailbox.outcomes = [dict(busy) for _ in range(10)]
    scheduler.start([env])
    times = []
    for _ in range(20):
        if not clock.getDelayedCalls():
            break
        clock.advance(min(t.getTime() for t in clock.getDelayedCalls()) - clock.seconds())
        times.append(clock.seconds())
    # Attempts at 0, then 60, 120 (quick), then hourly until 6 hours have passed.
    assert times == [60, 120, 3720, 7320, 10920, 14520, 18120, 21720]
    kinds = [n[0] for n in scheduler.notifier.sent]
    assert kinds == ["delayed", "failed"]
    assert scheduler.notifier.sent[1][3] == ["550 4.4.7 Message expired: it could not be delivered in time; last error: 451 busy"] * 2
    assert not store.exists("42")


def test_delay_notice_state_survives_a_restart(tmp_path):
    policy = RetryPolicy(retry_interval=3600, transient_attempts=0, transient_interval=60, delay_notice=0.0)
    store, clock, mailbox, scheduler, env = with_notices(tmp_path, policy)
    mailbox.outcomes = [{"a@corp.example": (RecipientState.PENDING, "451"), "b@corp.example": (RecipientState.PENDING, "451")}] * 3
    scheduler.start([env])
    assert [n[0] for n in scheduler.notifier.sent] == ["delayed"]
    scheduler.stop()
    (recovered,) = QueueStore(tmp_path / "q", None).recover()
    assert recovered.delay_notified is True and recovered.next_attempt == 3600
    again = DeliveryScheduler(store, scheduler.router, scheduler.deliverers, clock, policy, 5, Notices())
    again.start([recovered])
    clock.advance(3600)
    assert again.notifier.sent == []


def test_a_failed_notice_is_kept_in_failed_not_reported(tmp_path):
    """A message from the null sender (a notice itself) that fails: no notice about a notice; kept for the admin."""
    store, _clock, mailbox, scheduler, env = with_notices(tmp_path, RetryPolicy(60, 0, 60))
    bounce = Envelope(**{**env.__dict__, "sender": ""})
    mailbox.outcomes = [{"a@corp.example": (RecipientState.FAILED, "550 no"), "b@corp.example": (RecipientState.FAILED, "550 no")}]
    scheduler.start([bounce])
    assert scheduler.notifier.sent == []
    assert (store.failed_directory / "42.json").exists()


def test_the_notifier_queues_a_durable_notice_from_the_null_sender(tmp_path):
    from gateway.intake import InternalIds
    from gateway.queue.notify import Notifier

    store, clock, _mailbox, _scheduler, env = setup(tmp_path)
    enqueued = []
    notifier = Notifier(store, InternalIds(clock, lambda: 42), clock, "mail.corp.example", lambda f, *a: succeed(f(*a)),
                        lambda e, body: enqueued.append((e, body)))
    failed = Recipient("a@corp.example", RecipientState.FAILED, 1, "550 5.1.1 unknown")
    notifier.notify("failed", env, [failed])
    (notice, body), = enqueued
    assert (notice.sender, [r.address for r in notice.recipients]) == ("", ["s@x"])
    assert (notice.reports_on, notice.report_kind, notice.subject) == ("42", "failed", "Undeliverable: ")
    (on_disk,) = [e for e in QueueStore(tmp_path / "q", None).recover() if e.queue_id == notice.queue_id]
    assert on_disk.sender == "" and body_bytes(store.body_path(notice.queue_id), on_disk.size) == body
    assert b"Final-Recipient: rfc822; a@corp.example" in body and b"Subject: t" in body
    assert notifier.notify("failed", Envelope(**{**env.__dict__, "sender": ""}), [failed]).result is None
    assert len(enqueued) == 1


def test_a_notice_that_cannot_be_made_does_not_strand_the_message(tmp_path):
    """A notifier that raises (a bug, not the disk): the message settles without its notice and is kept for the admin."""
    store, clock, mailbox, scheduler, env = with_notices(tmp_path, RetryPolicy(60, 0, 60))

    def broken(kind, envelope, recipients, retry_until=None):
        raise UnicodeEncodeError("ascii", "\ufffd", 0, 1, "ordinal not in range(128)")

    scheduler.notifier.notify = broken
    mailbox.outcomes = [{"a@corp.example": (RecipientState.FAILED, "550 5.1.1 unknown"), "b@corp.example": (RecipientState.DELIVERED, "250 ok")}]
    scheduler.start([env])
    assert scheduler.idle and "42" not in scheduler.messages and not clock.getDelayedCalls()
    assert (store.failed_directory / "42.json").exists()
    assert len(mailbox.calls) == 1

