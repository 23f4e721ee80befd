"""
gateway/queue/spares.py: spare files made ahead for new messages, and
delivered messages' files retired to become spares again; through the
store (what a crash leaves, what recovery makes of it) and alone.
"""

import os

from twisted.internet.defer import succeed
from zope.interface.verify import verifyObject

from gateway.interfaces import ISpareAllocator
from gateway.queue import spares as spares_module
from gateway.queue import store as store_module
from gateway.queue.format import FOOTER_LEN, encode_envelope, trailer
from gateway.queue.spares import SpareFiles
from gateway.queue.store import QueueStore, is_spare
from tests.queue.test_store import BODY, _commit, body_of, envelope, files, held_runner, sync_runner


def _ids(start: int):
    counter = iter(range(start, start + 1000))
    return lambda: next(counter)


def test_spare_files_are_made_ahead_with_one_directory_sync_and_commits_into_them_sync_only_the_file(tmp_path, monkeypatch):
    """A spare's name is durable before it is used: a message in one needs its own fsync, not the directory's."""
    syncs = []
    monkeypatch.setattr(store_module, "fsync_directory", lambda path: syncs.append(path))
    monkeypatch.setattr(spares_module, "fsync_directory", lambda path: syncs.append(path))
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    new_id = _ids(100)
    first = store.open_entry(new_id)
    # No spare yet: the first message has a file of its own; the spares are made meanwhile (one directory sync).
    assert not first.spare and first.queue_id == "100"
    assert syncs == [store.directory]
    assert files(store) == [f"{i}.eml" for i in range(101, 101 + SpareFiles.SPARES)]
    first.write(BODY)
    store.commit(first, envelope("100", len(BODY)))
    assert len(syncs) == 2
    second = store.open_entry(new_id)
    assert second.spare and second.queue_id == "101"
    second.write(BODY)
    store.commit(second, envelope("101", len(BODY)))
    assert len(syncs) == 2
    assert body_of(store, "101") == BODY
    assert [e.queue_id for e in QueueStore(tmp_path / "q", sync_runner).recover()] == ["100", "101"]


def test_spares_are_topped_up_at_half_and_removed_at_stop_or_at_the_next_start(tmp_path):
    calls, runner = held_runner()
    store = QueueStore(tmp_path / "q", runner)
    store.prepare()
    new_id = _ids(1)
    store.open_entry(new_id)
    assert len(calls) == 1  # one batch in flight: no second one
    store.open_entry(new_id)
    assert len(calls) == 1
    f, args, d = calls.pop()
    d.callback(f(*args))
    taken = [store.open_entry(new_id) for _ in range(SpareFiles.SPARES // 2)]
    assert all(e.spare for e in taken) and len(calls) == 1
    f, args, d = calls.pop()
    d.callback(f(*args))
    for e in taken:
        store.discard(e)
    spares = files(store)
    assert len(spares) == SpareFiles.SPARES
    # A crash leaves them: the next start removes them (they were never messages).
    assert QueueStore(tmp_path / "q", sync_runner).recover() == [] and files(store) == []
    store.stop()  # closes the spares' descriptors


def test_a_stop_removes_the_spare_files(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    entry = store.open_entry(_ids(1))
    assert len(files(store)) == SpareFiles.SPARES
    entry.write(BODY)
    store.commit(entry, envelope("1", len(BODY)))
    store.stop()
    assert files(store) == ["1.eml"]


def test_spares_that_cannot_be_made_leave_messages_their_own_files(tmp_path, monkeypatch):
    store = QueueStore(tmp_path / "q", lambda f, *a: succeed(None).addCallback(lambda _: f(*a)))
    store.prepare()
    new_id = _ids(1)
    (store.directory / "3.eml").write_bytes(BODY)  # in the way of the second spare
    entry = store.open_entry(new_id)
    assert files(store) == ["3.eml"]  # the batch failed and left nothing of its own
    entry.write(BODY)
    store.commit(entry, envelope("1", len(BODY)))
    second = store.open_entry(new_id)
    assert not second.spare  # it asks again: this time the files are made
    assert store.open_entry(new_id).spare


def test_a_delivered_messages_file_is_retired_then_written_over_as_a_spare(tmp_path):
    """
    remove() zeroes the footer in place (no longer a message, to recovery and
    to exists()); the next spares are the retired files renamed, written
    over from the start and cut to the new message's length.
    """
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    new_id = _ids(1)
    entries = [store.open_entry(new_id) for _ in range(2)]
    long_body = BODY + b"x" * 5000 + b"\r\n"
    for e in entries:
        e.write(long_body)
        store.commit(e, envelope(e.queue_id, len(long_body)))
    done = [e.queue_id for e in entries]
    inode = (store.directory / f"{done[0]}.eml").stat().st_ino
    for qid in done:
        store.remove(qid)
    assert [store.exists(q) for q in done] == [False, False]
    assert (store.directory / f"{done[0]}.eml").read_bytes()[-FOOTER_LEN:] == bytes(FOOTER_LEN)
    # Take spares until the store makes more: the first of the new ones is the first retired file, renamed.
    for _ in range(2 * SpareFiles.SPARES):
        if any(e.recycled for e in entries):
            break
        entries.append(store.open_entry(new_id))
    (reused, *_) = [e for e in entries if e.recycled]
    assert store.body_path(reused.queue_id).stat().st_ino == inode
    assert not (store.directory / f"{done[0]}.eml").exists()
    reused.write(BODY)
    store.commit(reused, envelope(reused.queue_id, len(BODY)))
    assert body_of(store, reused.queue_id) == BODY
    assert store.body_path(reused.queue_id).stat().st_size == len(BODY) + len(trailer(encode_envelope(envelope(reused.queue_id, len(BODY))), len(BODY)))
    (recovered,) = QueueStore(tmp_path / "q", sync_runner).recover()
    assert recovered.queue_id == reused.queue_id
    store.stop()


def test_a_crash_leaves_retired_and_reused_spares_to_recovery_which_deletes_them(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    kept = _commit(store, "7")
    gone = _commit(store, "8")
    store.remove(gone.queue_id)
    assert files(store) == ["7.eml", "8.eml"]
    # Restarted without a stop: the retired file is no message and goes; the queued one stays.
    assert QueueStore(tmp_path / "q", sync_runner).recover() == [kept]
    assert files(store) == ["7.eml"]


def test_big_files_and_any_past_the_limit_are_deleted_not_retired(tmp_path, monkeypatch):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    monkeypatch.setattr(SpareFiles, "RETIRED_MAX", 1)
    big = b"y" * (SpareFiles.RETIRED_SIZE_MAX + 1)
    _commit(store, "1", big)
    _commit(store, "2")
    _commit(store, "3")
    for qid in ("1", "2", "3"):
        store.remove(qid)
    # 1 is too big to keep, 3 is one past the limit: only 2 waits for reuse.
    assert files(store) == ["2.eml"]
    store.stop()
    assert files(store) == []


def test_exists_and_recovery_tell_a_retired_file_from_a_message(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    _commit(store, "4")
    assert store.exists("4") and is_spare(store.body_path("4")) is False
    store.remove("4")
    assert not store.exists("4") and is_spare(store.body_path("4"))


def test_a_reused_spare_renamed_before_its_zeroed_footer_reached_the_disk_is_removed_not_set_aside(tmp_path):
    """After a power loss the rename may have reached the disk and the zeroing not: the file names another, finished message."""
    store = QueueStore(tmp_path / "q", sync_runner)
    store.prepare()
    _commit(store, "8")
    os.rename(store.body_path("8"), store.body_path("20"))
    assert QueueStore(tmp_path / "q", sync_runner).recover() == []
    assert files(store) == [] and list(store.corrupt_directory.iterdir()) == []


# --- the allocator alone ---------------------------------------------------------


def test_spare_files_provide_the_allocator_interface(tmp_path):
    verifyObject(ISpareAllocator, SpareFiles(tmp_path, sync_runner))
    verifyObject(ISpareAllocator, SpareFiles(tmp_path, sync_runner, reuse=False))


def test_take_gives_nothing_until_spares_are_made_then_the_oldest_first(tmp_path):
    calls, runner = held_runner()
    spares = SpareFiles(tmp_path, runner)
    assert spares.take() is None
    spares.replenish(_ids(1))
    spares.replenish(_ids(100))  # one batch in flight: no second one
    assert len(calls) == 1 and spares.take() is None
    f, args, d = calls.pop()
    d.callback(f(*args))
    taken = [spares.take() for _ in range(2)]
    assert [(s.queue_id, s.recycled) for s in taken] == [("1", False), ("2", False)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.eml" for i in range(1, SpareFiles.SPARES + 1))
    for s in taken:
        os.close(s.fd)
    spares.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.eml", "2.eml"]  # taken spares are their takers' to keep


def test_a_retired_file_is_zeroed_then_renamed_into_the_next_spare(tmp_path):
    spares = SpareFiles(tmp_path, sync_runner)
    old = tmp_path / "5.eml"
    old.write_bytes(BODY + trailer(encode_envelope(envelope("5", len(BODY))), len(BODY)))
    inode = old.stat().st_ino
    spares.retire(str(old))
    assert is_spare(old) and old.read_bytes()[-FOOTER_LEN:] == bytes(FOOTER_LEN)
    spares.replenish(_ids(10))
    first = spares.take()
    assert first is not None and first.queue_id == "10" and first.recycled
    assert (tmp_path / "10.eml").stat().st_ino == inode and not old.exists()
    os.close(first.fd)
    spares.stop()


def test_without_reuse_a_delivered_messages_file_is_deleted(tmp_path):
    """The switch the benchmark turns off (bench/RESULTS.md): every retired file is deleted, every spare is new."""
    spares = SpareFiles(tmp_path, sync_runner, reuse=False)
    old = tmp_path / "5.eml"
    old.write_bytes(BODY + trailer(encode_envelope(envelope("5", len(BODY))), len(BODY)))
    spares.retire(str(old))
    assert not old.exists()
    spares.replenish(_ids(10))
    first = spares.take()
    assert first is not None and not first.recycled and os.path.getsize(tmp_path / "10.eml") == 0
    os.close(first.fd)
    spares.stop()


def test_a_store_given_an_allocator_without_reuse_keeps_no_delivered_file(tmp_path):
    store = QueueStore(tmp_path / "q", sync_runner, spares=SpareFiles(tmp_path / "q", sync_runner, reuse=False))
    store.prepare()
    _commit(store, "7")
    store.remove("7")
    assert files(store) == []


def test_a_retire_after_stop_deletes(tmp_path):
    spares = SpareFiles(tmp_path, sync_runner)
    spares.stop()
    old = tmp_path / "5.eml"
    old.write_bytes(BODY + trailer(encode_envelope(envelope("5", len(BODY))), len(BODY)))
    spares.retire(str(old))
    assert not old.exists()
    spares.replenish(_ids(10))
    assert spares.take() is None and list(tmp_path.iterdir()) == []
