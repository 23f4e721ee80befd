"""The durable store: a crash between any two commit steps leaves no message or a whole one."""

import os

import pytest
from twisted.internet.defer import Deferred, succeed

from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.entry import StoredBody
from gateway.queue.format import encode_envelope
from gateway.queue.store import QueueStore, body_bytes, read_trailer

BODY = b"Received: x\r\nSubject: t\r\n\r\nhello\r\n"


def sync_runner(f, *args):
    return succeed(f(*args))


def held_runner():
    """A run_in_thread that holds each call until the test runs it: (calls, runner)."""
    calls = []

    def runner(f, *args):
        d = Deferred()
        calls.append((f, args, d))
        return d

    return calls, runner


def envelope(qid: str, size: int) -> Envelope:
    return Envelope(qid, int(qid), "<m@x>", "s@x.example", (Recipient("a@corp.example"), Recipient("b@corp.example")), 1.0, size)


def files(store):
    return sorted(p.name for p in store.directory.iterdir() if p.is_file())


def _commit(store, qid: str, body: bytes = BODY) -> Envelope:
    entry = store.create(qid)
    entry.write(body)
    env = envelope(qid, len(body))
    store.commit(entry, env)
    return env


def body_of(store, qid: str) -> bytes:
    """What the queue file holds before its trailer."""
    return body_bytes(store.body_path(qid), read_trailer(store.body_path(qid))[1])


@pytest.mark.parametrize("steps_done", [0, 1, 2, 3])
def test_crash_between_commit_steps(tmp_path, steps_done):
    """Stopping after any step of a batch commit, recovery finds either nothing or the complete messages, and no leftovers."""
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    items = []
    for qid, body in (("1001", BODY), ("1002", BODY * 30_000)):  # one in memory, one spilled to its file
        entry = store.create(qid)
        entry.write(body)
        items.append((entry, envelope(qid, len(body))))
    steps = store.commit_steps(items, [])
    for _ in range(steps_done):
        next(steps)
    for entry, _ in items:
        entry.close()  # the process dies: nothing else runs

    again = QueueStore(tmp_path / "q", sync_runner)
    recovered = again.recover()
    if steps_done == 0:
        # The spilled body was half written, with no envelope after it: gone.
        assert recovered == [] and files(store) == []
    else:
        # Written whole (here the page cache survives; after a power cut only
        # what was fsynced would, and only that was acknowledged).
        assert recovered == [env for _, env in items]
        assert files(store) == ["1001.eml", "1002.eml"]
        assert body_of(again, "1001") == BODY and body_of(again, "1002") == BODY * 30_000


def test_a_queue_file_is_the_body_then_the_envelope_then_a_footer(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    env = _commit(store, "7")
    data = store.body_path("7").read_bytes()
    json = encode_envelope(env)
    assert data == BODY + json + b"\n" + b"#exgateway-envelope %012d %08d\n" % (len(BODY), len(json))
    assert read_trailer(store.body_path("7")) == (json, len(BODY))


def test_a_body_in_memory_is_written_whole_however_the_kernel_splits_the_write(tmp_path, monkeypatch):
    """Body and trailer go out in one writev where the kernel takes it all; a short write carries on where it stopped."""
    import gateway.queue.store as store_module

    sizes = []

    def short_writev(fd, buffers):
        first = bytes(buffers[0][:7])
        sizes.append(len(first))
        return os.write(fd, first)

    monkeypatch.setattr(store_module.os, "writev", short_writev)
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    env = _commit(store, "8")
    assert body_of(store, "8") == BODY
    assert read_trailer(store.body_path("8")) == (encode_envelope(env), len(BODY))
    assert len(sizes) > 2 and max(sizes) == 7


def test_commit_then_recover_round_trip(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    entry = store.create("7")
    entry.write(BODY)
    results = []
    store.commit(entry, envelope("7", len(BODY))).addCallback(results.append)
    assert results == [None]
    assert files(store) == ["7.eml"]
    assert QueueStore(tmp_path / "q", sync_runner).recover() == [envelope("7", len(BODY))]
    with StoredBody(store.body_path("7"), size=len(BODY)).open() as f:
        assert f.read() == BODY


def test_unreadable_envelope_is_set_aside_not_fatal(tmp_path):
    """A garbled envelope file and one that does not match its body go to corrupt/; a file cut short is dropped; the good one stays."""
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    for qid in ("1", "2", "3", "4"):
        _commit(store, qid)
    (tmp_path / "q" / "1.json").write_bytes(b"{not json")
    (tmp_path / "q" / "2.json").write_bytes(encode_envelope(envelope("2", len(BODY) + 5)))
    with open(tmp_path / "q" / "4.eml", "r+b") as f:
        f.truncate(len(BODY) + 3)
    recovered = store.recover()
    assert [e.queue_id for e in recovered] == ["3"]
    assert sorted(os.listdir(tmp_path / "q" / "corrupt")) == ["1.eml", "1.json", "2.eml", "2.json"]
    assert files(store) == ["3.eml"]


def test_discard_leaves_nothing(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    e = store.create("9")
    e.write(b"partial")
    store.discard(e)
    assert files(store) == []


def test_update_and_remove(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    e = store.create("5")
    e.write(BODY)
    env = envelope("5", len(BODY))
    store.commit(e, env)
    updated = env.with_results({"a@corp.example": (RecipientState.DELIVERED, "250 ok")}, 99.0)
    store.update(updated)
    assert files(store) == ["5.eml", "5.json"]
    (again,) = store.recover()
    assert [r.state for r in again.recipients] == [RecipientState.DELIVERED, RecipientState.PENDING]
    assert again.next_attempt == 99.0 and again.recipients[0].attempts == 1
    store.remove("5")
    # Gone as a message; its file waits, retired, to become a spare (a stop removes it).
    assert not store.exists("5") and files(store) == ["5.eml"]
    assert store.recover() == [] and files(store) == []


def test_commits_during_a_batch_go_together_in_the_next(tmp_path):
    """Group commit: while one batch is in the thread, later commits queue up and share one batch."""
    calls, manual_runner = held_runner()

    store = QueueStore(tmp_path / "q", manual_runner)
    store.prepare()
    done = []
    for qid in ("1", "2", "3", "4"):
        e = store.create(qid)
        e.write(BODY)
        store.commit(e, envelope(qid, len(BODY))).addCallback(lambda _, q=qid: done.append(q))
    assert len(calls) == 1 and [entry.queue_id for entry in calls[0][1][0]] == ["1"]
    f, args, d = calls[0]
    d.callback(f(*args))
    assert done == ["1"]
    assert len(calls) == 2 and [entry.queue_id for entry in calls[1][1][0]] == ["2", "3", "4"]
    f, args, d = calls[1]
    d.callback(f(*args))
    assert done == ["1", "2", "3", "4"]
    assert len(calls) == 2


def test_small_body_stays_in_memory_large_body_spills_as_it_arrives(tmp_path):
    """Below SPILL nothing touches the disk before the commit; above it, the body streams to its file."""
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    small = store.create("1")
    small.write(b"x" * 1000)
    assert files(store) == []
    big = store.create("2")
    for _ in range(5):
        big.write(b"y" * 100_000)
    assert files(store) == ["2.eml"]
    big.flush(b"")
    big.close()
    assert (tmp_path / "q" / "2.eml").stat().st_size == 500_000


def test_removals_are_posted_to_the_thread_behind_its_work_and_answer_nothing(tmp_path):
    """remove() never unlinks in the caller: each removal is posted to the store's thread, in order, with no reply to wait for."""
    calls, manual_runner = held_runner()
    posted = []
    store = QueueStore(tmp_path / "q", manual_runner, lambda f, *a: posted.append((f, a)))
    store.prepare()
    for qid in ("1", "2"):
        e = store.create(qid)
        e.write(BODY)
        store.commit(e, envelope(qid, len(BODY)))
    f, args, d = calls[0]
    d.callback(f(*args))  # commits 1
    store.remove("1")
    # Posted while commit 2 is still in the thread: it runs after it, and nothing waits for it.
    assert [a for _, a in posted] == [("1",)] and "1.eml" in files(store)
    f, args, d = calls[1]
    d.callback(f(*args))  # commits 2
    store.remove("2")
    for f, a in posted:
        f(*a)
    assert not store.exists("1") and not store.exists("2") and len(calls) == 2
    store.stop()
    assert files(store) == []


def test_recovery_sets_the_floor_for_new_ids(tmp_path):
    """After a restart with the clock set back, new InternalIds still sort after the queued ones."""
    from twisted.internet.task import Clock

    from gateway.intake import InternalIds

    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    e = store.create("5000000")
    e.write(BODY)
    store.commit(e, envelope("5000000", len(BODY)))
    again = QueueStore(tmp_path / "q", sync_runner)
    again.recover()
    ids = InternalIds(Clock(), lambda: again.highest_id)
    assert ids.next() == 5000001


def test_adopt_takes_in_another_folders_messages_even_after_an_interrupted_move(tmp_path):
    """A worker no longer run leaves its queue folder; worker 0 takes the messages in before it recovers."""
    mine = QueueStore(tmp_path / "q", sync_runner)
    theirs = QueueStore(tmp_path / "q" / "worker-1", sync_runner)
    mine.prepare()
    theirs.prepare()
    own = _commit(mine, "10")
    moved = _commit(theirs, "11")
    half = _commit(theirs, "13")
    later = half.with_results({"a@corp.example": (RecipientState.DELIVERED, "250 ok")}, 99.0)
    theirs.update(later)
    # An earlier adoption stopped between 13's queue file and its envelope file.
    os.replace(theirs.body_path("13"), mine.body_path("13"))

    assert mine.adopt(theirs.directory) == 1
    assert mine.recover() == [own, moved, later]
    assert files(theirs) == []
    assert body_of(mine, "11") == BODY


def test_a_message_whose_fsync_fails_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    """One bad file fails one message of the batch; it is not found as queued mail at the next start."""
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    monkeypatch.setattr(QueueStore, "_fsync_all", staticmethod(lambda fds: [OSError(5, "I/O error")] + [None] * (len(fds) - 1)))
    items = []
    for qid in ("1", "2"):
        entry = store.create(qid)
        entry.write(BODY)
        items.append((entry, envelope(qid, len(BODY))))
    results = []
    for _ in store.commit_steps(items, results):
        pass
    assert [type(r).__name__ if r else None for r in results] == ["OSError", None]
    assert files(store) == ["2.eml"]
    assert [e.queue_id for e in QueueStore(tmp_path / "q", sync_runner).recover()] == ["2"]


def test_messages_queued_in_the_earlier_format_are_still_delivered(tmp_path):
    """Before queue files carried their envelope, a message was a bare body and an envelope file: an upgrade keeps them."""
    q = tmp_path / "q"
    q.mkdir()
    (q / "8.eml").write_bytes(BODY)
    (q / "8.json").write_bytes(encode_envelope(envelope("8", len(BODY))))
    store = QueueStore(q, sync_runner)
    assert store.recover() == [envelope("8", len(BODY))]
    with StoredBody(store.body_path("8"), size=len(BODY)).open() as f:
        assert f.read() == BODY
