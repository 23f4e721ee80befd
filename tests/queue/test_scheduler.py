"""Delivery attempts and the fixed retry, driven by task.Clock."""

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.scheduler import DeliveryScheduler
from gateway.queue.store import QueueStore
from gateway.route.router import MAILBOX, Router

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
    scheduler = DeliveryScheduler(store, router, {MAILBOX: mailbox}, clock, retry_interval=60, max_concurrent=5)
    e = store.create("42")
    e.write(BODY)
    env = Envelope("42", 42, "<m@x>", "s@x", (Recipient("a@corp.example"), Recipient("b@corp.example")), 0.0, len(BODY))
    store.commit(e, env)
    return store, clock, mailbox, scheduler, env


def test_delivered_message_leaves_the_queue(tmp_path):
    store, clock, mailbox, scheduler, env = setup(tmp_path)
    ok = (RecipientState.DELIVERED, "250 ok")
    mailbox.outcomes = [{"a@corp.example": ok, "b@corp.example": ok}]
    scheduler.start([env])
    assert mailbox.calls == [("42", ["a@corp.example", "b@corp.example"], BODY)]
    assert not store.exists("42")
    assert scheduler.idle


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
    store, clock, mailbox, scheduler, env = setup(tmp_path)
    clock.advance(100)
    later = Envelope(**{**env.__dict__, "next_attempt": 130.0})
    mailbox.outcomes = [{"a@corp.example": (RecipientState.DELIVERED, "250"), "b@corp.example": (RecipientState.DELIVERED, "250")}]
    scheduler.start([later])
    assert mailbox.calls == []
    clock.advance(30)
    assert len(mailbox.calls) == 1


def test_unroutable_recipient_fails_without_a_delivery_call_and_is_kept(tmp_path):
    """A recipient that fails for good is not silently dropped: the message waits in failed/."""
    store, clock, mailbox, scheduler, _ = setup(tmp_path)
    e = store.create("43")
    e.write(BODY)
    env = Envelope("43", 43, "<m@x>", "s@x", (Recipient("z@gone.example"),), 0.0, len(BODY))
    store.commit(e, env)
    scheduler.start([env])
    assert mailbox.calls == [] and not store.exists("43")
    kept = Envelope.from_json((tmp_path / "q" / "failed" / "43.json").read_bytes())
    assert [(r.state, r.last_reply) for r in kept.recipients] == [
        (RecipientState.FAILED, "550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain")
    ]
    assert (tmp_path / "q" / "failed" / "43.eml").read_bytes() == BODY


def test_first_attempt_body_from_memory_within_a_budget(tmp_path, monkeypatch):
    """A just-queued body is handed over from memory, but only within the cache budget."""
    from gateway.queue import scheduler as scheduler_module

    store, clock, mailbox, scheduler, env = setup(tmp_path)
    monkeypatch.setattr(scheduler_module, "BODY_CACHE_BYTES", 10)
    scheduler._running = True
    seen = []
    mailbox.deliver = lambda e, rcpts, body: (seen.append(body.data), succeed({r: (RecipientState.DELIVERED, "250") for r in rcpts}))[1]
    scheduler.max_concurrent = 0  # hold the attempts while bodies are offered
    scheduler.enqueue(env, b"12345")
    scheduler.enqueue(env, b"too long for what is left")
    assert scheduler._body_bytes == 5
    scheduler.max_concurrent = 5
    scheduler._pump()
    assert seen[0] == b"12345" and seen[1] is None
    assert scheduler._body_bytes == 0
