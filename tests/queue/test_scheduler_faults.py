"""
A disk that fills while messages are queued (issue 17, item 3): a failed
envelope update leaves the message scheduled and retried, `queue retry`
reaches it, and a restart while the disk is still full strands nothing.
The failure is injected (os.fsync raising ENOSPC in the store), not made.
"""

import errno
import os

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.nexthop import MAILBOX
from gateway.queue.retry import RetryPolicy
from gateway.queue.scheduler import DeliveryScheduler
from gateway.queue.store import QueueStore
from gateway.route.router import Router

BODY = b"Subject: t\r\n\r\nx\r\n"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Mailbox:
    """Defers every recipient while `down`, delivers otherwise; counts calls."""

    def __init__(self):
        self.down = True
        self.calls = []

    def deliver(self, envelope, recipients, body):
        self.calls.append(envelope.queue_id)
        if self.down:
            return succeed(dict.fromkeys(recipients, (RecipientState.PENDING, "451 4.4.0 next hop down")))
        return succeed(dict.fromkeys(recipients, (RecipientState.DELIVERED, "250 ok")))


class Disk:
    """Makes every fsync in the store fail with ENOSPC while `full`."""

    def __init__(self, monkeypatch):
        self.full = False
        real = os.fsync

        def fsync(fd):
            if self.full:
                raise ENOSPC
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def queued(tmp_path, ids=("42",)):
    store = QueueStore(tmp_path / "q", _run_sync)
    store.prepare()
    envelopes = []
    for queue_id in ids:
        e = store.create(queue_id)
        e.write(BODY)
        env = Envelope(queue_id, int(queue_id), "<m@x>", "s@x", (Recipient("a@corp.example"),), 0.0, len(BODY))
        store.commit(e, env)
        envelopes.append(env)
    return store, envelopes


def _run_sync(f, *args):
    """The store's thread, run inline; an exception comes back as a failed Deferred, as SerialThread.call gives it."""
    try:
        return succeed(f(*args))
    except Exception as e:
        return fail(e)


def scheduler_for(store, clock, mailbox):
    router = Router(AcceptedDomains([AcceptedDomain("c", "corp.example")]))
    return DeliveryScheduler(store, router, {MAILBOX: mailbox}, clock, RetryPolicy(60, 0, 60), max_concurrent=5)


def test_a_failed_envelope_update_leaves_the_message_scheduled_and_retried(tmp_path, monkeypatch):
    """ENOSPC on the update after a deferral: the message is tried again at its interval and delivered once space is back."""
    disk = Disk(monkeypatch)
    store, (env,) = queued(tmp_path)
    clock, mailbox = Clock(), Mailbox()
    scheduler = scheduler_for(store, clock, mailbox)
    disk.full = True
    scheduler.start([env])
    assert mailbox.calls == ["42"]
    assert "42" in scheduler.messages and not scheduler.in_delivery
    # Nothing half-written is left to take space.
    assert not list((tmp_path / "q").glob("*.tmp"))
    clock.advance(60)
    assert mailbox.calls == ["42", "42"]
    disk.full = False
    mailbox.down = False
    clock.advance(60)
    assert mailbox.calls == ["42", "42", "42"]
    assert "42" not in scheduler.messages and not store.exists("42")


def test_queue_retry_reaches_a_message_whose_update_failed(tmp_path, monkeypatch):
    """`queue retry` (retry_now) counts and attempts the message at once, not "0 message(s) retried"."""
    disk = Disk(monkeypatch)
    store, (env,) = queued(tmp_path)
    clock, mailbox = Clock(), Mailbox()
    scheduler = scheduler_for(store, clock, mailbox)
    disk.full = True
    scheduler.start([env])
    disk.full = False
    mailbox.down = False
    assert scheduler.retry_now() == 1
    assert mailbox.calls == ["42", "42"]
    assert not store.exists("42")


def test_a_notice_that_cannot_be_queued_leaves_the_message_scheduled(tmp_path):
    """A permanent failure whose NDR cannot be written (disk full): the message is kept and tried again, not dropped or stranded."""
    store, (env,) = queued(tmp_path)
    clock = Clock()

    class Refusing:
        def deliver(self, envelope, recipients, body):
            return succeed(dict.fromkeys(recipients, (RecipientState.FAILED, "550 5.1.1 unknown")))

    class FullNotifier:
        tries = 0

        def notify(self, kind, envelope, recipients, *args):
            self.tries += 1
            raise OSError(errno.ENOSPC, "No space left on device")

    scheduler = scheduler_for(store, clock, Refusing())
    scheduler.notifier = FullNotifier()
    scheduler.start([env])
    assert store.exists("42") and "42" in scheduler.messages
    clock.advance(60)
    assert scheduler.notifier.tries == 2


def test_a_restart_while_the_disk_is_full_strands_nothing(tmp_path, monkeypatch):
    """Recovery needs no free space; every message recovered while full is delivered once space returns, without another restart."""
    disk = Disk(monkeypatch)
    _store, _envelopes = queued(tmp_path, ids=("41", "42", "43"))
    disk.full = True
    # A leftover update from before the crash, as the full disk left it.
    (tmp_path / "q" / "42.json.tmp").write_bytes(b"{")
    restarted = QueueStore(tmp_path / "q", _run_sync)
    recovered = restarted.recover()
    assert sorted(e.queue_id for e in recovered) == ["41", "42", "43"]
    clock, mailbox = Clock(), Mailbox()
    scheduler = scheduler_for(restarted, clock, mailbox)
    scheduler.start(recovered)
    # The next hop is down too: one probe, the others wait behind it (gateway/queue/hopqueue.py).
    assert mailbox.calls == ["41"]
    clock.advance(60)
    assert len(mailbox.calls) == 2
    disk.full = False
    mailbox.down = False
    clock.advance(60)
    assert scheduler.messages == {}
    assert not any(restarted.exists(q) for q in ("41", "42", "43"))
