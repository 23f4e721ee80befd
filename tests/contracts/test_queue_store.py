"""
The queue store's contract: one set of assertions run against the real
QueueStore (files in tmp_path) and gateway.testing.FakeQueueStore (memory),
for what the intake and the scheduler rely on: a committed message comes back
after a restart with its envelope and exact body, nothing uncommitted does,
an update is what a restart sees, a removed or failed message does not come
back, and queue ids come from the caller's counter.
"""

from twisted.internet.defer import succeed

from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.store import QueueStore, body_bytes, read_trailer
from gateway.testing import FakeDisk, FakeQueueStore

BODY = b"Received: from scanner3\r\nSubject: scan\r\n\r\n.leading dot kept\r\n"


def sync_runner(f, *args):
    return succeed(f(*args))


def envelope(qid: str, size: int) -> Envelope:
    return Envelope(qid, int(qid), "<m@x>", "s@corp.example", (Recipient("a@corp.example"), Recipient("b@partner.example")), 1.0, size)


class Ids:
    def __init__(self, start: int) -> None:
        self.last = start

    def __call__(self) -> int:
        self.last += 1
        return self.last


def fired(d):
    results = []
    d.addBoth(results.append)
    assert results, "the store's Deferred did not fire"
    return results[0]


class QueueStoreContract:
    """make_store() is a fresh store; restart(store) a new store over the same storage, recovered."""

    def make_store(self):
        raise NotImplementedError

    def restart(self, store):
        raise NotImplementedError

    def body(self, store, queue_id: str) -> bytes:
        raise NotImplementedError

    def commit(self, store, ids, body: bytes = BODY) -> Envelope:
        entry = store.open_entry(ids)
        entry.write(body[:10])
        entry.write(body[10:])
        assert entry.size == len(body)
        env = envelope(entry.queue_id, entry.size)
        assert fired(store.commit(entry, env)) is None
        return env

    def test_a_committed_message_comes_back_after_a_restart_with_its_envelope_and_exact_body(self, tmp_path):
        """The 250's promise: after commit, a restart's recover() returns the envelope, and the body is byte for byte."""
        self.tmp_path = tmp_path
        store = self.make_store()
        env = self.commit(store, Ids(1000))
        assert store.exists(env.queue_id)
        again, recovered = self.restart(store)
        assert recovered == [env]
        assert self.body(again, env.queue_id) == BODY
        assert again.highest_id >= int(env.queue_id)

    def test_a_discarded_message_never_comes_back(self, tmp_path):
        """A message refused before its 250 (discard) is not queued: a restart finds nothing."""
        self.tmp_path = tmp_path
        store = self.make_store()
        entry = store.open_entry(Ids(1000))
        entry.write(BODY)
        store.discard(entry)
        assert not store.exists(entry.queue_id)
        assert self.restart(store)[1] == []

    def test_queue_ids_come_from_the_callers_counter_and_differ(self, tmp_path):
        """Two messages: two ids, each above the counter's start (the intake's InternalIds)."""
        self.tmp_path = tmp_path
        store = self.make_store()
        ids = Ids(5000)
        first, second = store.open_entry(ids), store.open_entry(ids)
        assert first.queue_id != second.queue_id
        assert int(first.queue_id) > 5000 and int(second.queue_id) > 5000
        store.discard(first)
        store.discard(second)

    def test_an_updated_envelope_is_what_a_restart_sees(self, tmp_path):
        """After a delivery attempt the scheduler updates recipient states: a restart retries only the pending one."""
        self.tmp_path = tmp_path
        store = self.make_store()
        env = self.commit(store, Ids(1000))
        done = env.with_results({"a@corp.example": (RecipientState.DELIVERED, "250 2.0.0 ok")}, next_attempt=60.0)
        assert fired(store.update(done)) is None
        _, recovered = self.restart(store)
        assert recovered == [done]
        assert [r.address for r in recovered[0].pending] == ["b@partner.example"]

    def test_a_removed_message_does_not_come_back(self, tmp_path):
        """Delivered to every recipient, removed: a restart does not deliver it again."""
        self.tmp_path = tmp_path
        store = self.make_store()
        kept = self.commit(store, Ids(1000))
        gone = self.commit(store, Ids(2000))
        store.remove(gone.queue_id)
        assert not store.exists(gone.queue_id)
        assert self.restart(store)[1] == [kept]

    def test_a_message_failed_for_good_leaves_the_queue(self, tmp_path):
        """set_failed: kept for the admin elsewhere, not recovered into the queue again."""
        self.tmp_path = tmp_path
        store = self.make_store()
        env = self.commit(store, Ids(1000))
        store.set_failed(env.queue_id)
        assert not store.exists(env.queue_id)
        assert self.restart(store)[1] == []

    def test_many_messages_come_back_each_with_its_own_body(self, tmp_path):
        """Three messages of different sizes (one past the in-memory threshold): each body is its own."""
        self.tmp_path = tmp_path
        store = self.make_store()
        ids = Ids(1000)
        bodies = [BODY, BODY * 2, BODY * 10_000]
        envs = [self.commit(store, ids, b) for b in bodies]
        again, recovered = self.restart(store)
        assert sorted(recovered, key=lambda e: e.queue_id) == envs
        assert [self.body(again, e.queue_id) for e in envs] == bodies


class TestQueueStore(QueueStoreContract):
    def make_store(self):
        store = QueueStore(self.tmp_path / "queue", sync_runner)
        store.recover()
        return store

    def restart(self, store):
        # What a crash leaves: no stop(), a new store over the same directory.
        again = QueueStore(store.directory, sync_runner)
        return again, sorted(again.recover(), key=lambda e: e.queue_id)

    def body(self, store, queue_id):
        return body_bytes(store.body_path(queue_id), read_trailer(store.body_path(queue_id))[1])


class TestFakeQueueStore(QueueStoreContract):
    def make_store(self):
        return FakeQueueStore(FakeDisk())

    def restart(self, store):
        again = FakeQueueStore(store.disk)
        return again, sorted(again.recover(), key=lambda e: e.queue_id)

    def body(self, store, queue_id):
        return store.body(queue_id)
