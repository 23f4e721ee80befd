"""
The durable message store: one queue file per message (gateway/queue/format.py
says what it holds), plus an envelope file once its state changes.

Order of a commit (and why a crash at any point loses nothing acknowledged):

1. the body is written while DATA streams in (or kept in memory if small,
   and written at the commit), then the trailer after it
   (gateway/queue/entry.py);
2. the file is fsynced, then the directory if the file was created for
   this message; only then does the client get its 250.

New messages from the intake go into spare files made ahead of time by an
ISpareAllocator (gateway/queue/spares.py), whose names are on disk before
the message arrives: such a message needs only its file's fsync before its
250. So a commit costs one file fsync, plus one directory fsync per batch
when some file in it is not a spare. Commits arriving while one is in
flight wait and go together in the next batch: one thread hop and one
directory fsync per batch, not per message (group commit).

A delivered message's file goes back to the allocator (retired: it may
become a spare again). After a delivery attempt changes a message's state,
the new envelope goes to `<id>.json` (written, fsynced, renamed into
place), which from then on wins over the trailer; the body is never
rewritten.

On start, `recover` deletes what was never a message or never acknowledged
(a spare or retired file, a file without a valid footer, a stray `.tmp`,
an envelope file whose message is gone) and moves any message whose
envelope does not parse or does not match its body to `corrupt/`, logged,
never fatal. A message queued in the legacy format (a bare body beside its
envelope file) is recovered and delivered as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from gateway.envelope import Envelope
from gateway.files import fsync_directory, make_directory
from gateway.interfaces import IQueueStore
from gateway.queue.entry import QueueEntry, unlink_quietly, write_all
from gateway.queue.format import (
    BODY,
    ENVELOPE,
    FOOTER_LEN,
    TMP,
    NoTrailer,
    StaleSpare,
    decode_message,
    encode_envelope,
    footer_sizes,
    holds_no_message,
    trailer,
)
from gateway.queue.fsyncs import fsync_all
from gateway.queue.spares import SpareFiles

log = Logger(namespace="exgateway.queue")


def read_trailer(path: Path | str) -> tuple[bytes, int]:
    """(envelope JSON, body size) from a queue file; NoTrailer (a ValueError) if it has no complete trailer."""
    with open(path, "rb") as f:
        total = f.seek(0, os.SEEK_END)
        f.seek(max(total - FOOTER_LEN, 0))
        body_size, json_size = footer_sizes(f.read(FOOTER_LEN), total)
        f.seek(body_size)
        return f.read(json_size), body_size


def is_spare(path: Path | str) -> bool:
    """
    Whether a queue file holds no message: empty (a new spare), or ending in
    a zeroed footer (a delivered message's file, retired or reused as a
    spare and not yet written over). A message's file always ends in its
    footer.
    """
    with open(path, "rb") as f:
        total = f.seek(0, os.SEEK_END)
        f.seek(max(total - FOOTER_LEN, 0))
        return holds_no_message(total, f.read(FOOTER_LEN))


def holds_message(path: Path | str) -> bool:
    """Whether a queue file holds a message (not a spare, not a retired file, not gone meanwhile)."""
    try:
        return not is_spare(path)
    except FileNotFoundError:
        return False


def body_bytes(path: Path, size: int) -> bytes:
    """A queue file's body (its first `size` bytes), whole in memory: for export, not for delivery."""
    with open(path, "rb") as f:
        return f.read(size)


@implementer(IQueueStore)
class QueueStore:
    """
    Files in one directory; blocking work (commits, spares, envelope
    updates, removals) runs through `run_in_thread`. The gateway gives it
    one thread of its own for all of that (gateway/serialthread.py): each
    message's 250 waits for a round trip to it, and one thread measured
    cheaper than two or than the reactor's pool (bench/RESULTS.md).
    """

    def __init__(
        self, directory: Path, run_in_thread: Callable[..., Deferred], post_in_thread: Callable[..., None] | None = None,
        spares: SpareFiles | None = None,
    ) -> None:
        self.directory = Path(directory)
        # The directory as a string prefix: a message's files are named on its hot path (a pathlib.Path costs more).
        self._prefix = str(self.directory) + os.sep
        self.corrupt_directory = self.directory / "corrupt"
        self.failed_directory = self.directory / "failed"
        self._run = run_in_thread
        # Work whose result nobody waits for (SerialThread.post); by default a call whose result is dropped.
        self._post = post_in_thread or self._run_and_forget
        self._pending: list[tuple[QueueEntry | Exception, Deferred]] = []
        self._committing = False
        # Any ISpareAllocator; by default spare files made here through the same thread, reused.
        self.spares = spares if spares is not None else SpareFiles(self.directory, run_in_thread)
        # The highest queue id found on disk at recovery (ids are integers).
        self.highest_id = 0

    def _run_and_forget(self, f: Callable, *args) -> None:
        self._run(f, *args).addErrback(lambda failure: log.failure("queue: {call} failed", failure, call=f.__name__))

    def prepare(self) -> None:
        for directory in (self.directory, self.corrupt_directory, self.failed_directory):
            make_directory(directory)

    def body_path(self, queue_id: str) -> Path:
        return self.directory / (queue_id + BODY)

    def body_file(self, queue_id: str) -> str:
        """body_path as a string, for the per-message work (commits, deliveries, removals)."""
        return self._prefix + queue_id + BODY

    def envelope_path(self, queue_id: str) -> Path:
        return self.directory / (queue_id + ENVELOPE)

    def _envelope_file(self, queue_id: str) -> str:
        return self._prefix + queue_id + ENVELOPE

    def exists(self, queue_id: str) -> bool:
        """Whether a message is queued under this id (a retired file, waiting to become a spare, holds none)."""
        return self.envelope_path(queue_id).exists() or holds_message(self.body_path(queue_id))

    # --- receiving ------------------------------------------------------

    def create(self, queue_id: str) -> QueueEntry:
        return QueueEntry(queue_id, self.body_file(queue_id))

    def open_entry(self, new_id: Callable[[], int]) -> QueueEntry:
        """
        A new message's entry: in the oldest spare file if one is ready,
        else in a file of its own under `new_id()` (created at its commit
        or spill, and synced with the directory); then the allocator makes
        more spares if it runs low, under ids from `new_id` too.
        """
        spare = self.spares.take()
        if spare is not None:
            entry = QueueEntry(spare.queue_id, self.body_file(spare.queue_id), spare.fd, spare.recycled)
        else:
            entry = self.create(str(new_id()))
        self.spares.replenish(new_id)
        return entry

    def stop(self) -> None:
        """Give back the spare and retired files (a crash leaves them to the next start's recovery)."""
        self.spares.stop()

    def discard(self, entry: QueueEntry) -> None:
        """Forget a message that was never acknowledged."""
        exists = entry.opened
        entry.close()
        if exists:
            unlink_quietly(entry.path)

    def commit(self, entry: QueueEntry, envelope: Envelope) -> Deferred:
        """Make the message durable; fires when the 250 may be sent."""
        prepared = self._write(entry, envelope)
        if isinstance(prepared, Exception):
            return fail(prepared)
        d: Deferred = Deferred()
        self._pending.append((prepared, d))
        if not self._committing:
            self._next_batch()
        return d

    def _next_batch(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            self._committing = False
            return
        self._committing = True
        done = self._run(self._sync_batch, [prepared for prepared, _ in batch])
        done.addBoth(self._batch_done, batch)

    def _batch_done(self, result, batch) -> None:
        for i, (_, d) in enumerate(batch):
            if isinstance(result, list) and result[i] is None:
                d.callback(None)
            else:
                error = result[i] if isinstance(result, list) else result
                d.errback(error)
        self._next_batch()

    def _write(self, entry: QueueEntry, envelope: Envelope):
        """
        Step 1, in the reactor thread: the body's last bytes and the trailer
        go to the page cache (fast; no fsync here). Doing this in the
        committing thread instead cost a GIL hand-off per system call while
        the reactor was busy: about 14 ms for a batch of 19.
        """
        try:
            entry.flush(trailer(encode_envelope(envelope), entry.size))
        except OSError as e:
            self.discard(entry)
            return e
        return entry

    def _sync_batch(self, batch: list) -> list:
        """In a thread: step 2 for a batch."""
        results: list = []
        for _ in self._sync_steps(batch, results):
            pass
        return results

    def commit_steps(self, items: list[tuple[QueueEntry, Envelope]], results: list) -> Iterator[str]:
        """Every step of a commit for a batch, yielding after each (tests crash between them)."""
        prepared = [self._write(entry, envelope) for entry, envelope in items]
        yield "written"
        yield from self._sync_steps(prepared, results)

    def _sync_steps(self, batch: list, results: list) -> Iterator[str]:
        """
        fsync every file of the batch, then the directory once. results[i]
        is None if item i is durable, else the exception that failed it:
        one bad file fails one message, not the batch.
        """
        results[:] = [p if isinstance(p, Exception) else None for p in batch]
        try:
            fds = [entry.fileno() for entry in batch if not isinstance(entry, Exception)]
            errors = iter(self._fsync_all(fds))
            for i in range(len(batch)):
                if results[i] is None:
                    results[i] = next(errors)
        finally:
            for entry in batch:
                if not isinstance(entry, Exception):
                    entry.close()
        for entry, result in zip(batch, results, strict=True):
            if result is not None and not isinstance(entry, Exception):
                # Refused to its client: it must not come back as queued mail at the next start.
                unlink_quietly(entry.path)
        yield "synced"
        if any(not entry.spare for entry in batch if not isinstance(entry, Exception)):
            # A spare's name was made durable before it was handed out.
            fsync_directory(self.directory)
        yield "directory synced"

    @staticmethod
    def _fsync_all(fds: list[int]) -> list[Exception | None]:
        """fsync each file of a batch, all at once (gateway/queue/fsyncs.py)."""
        return fsync_all(fds)

    @staticmethod
    def _write_synced(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- after delivery attempts -------------------------------------------

    def update(self, envelope: Envelope) -> Deferred:
        """Durably replace a message's envelope (new recipient states)."""
        return self._run(self._update_sync, envelope)

    def _update_sync(self, envelope: Envelope) -> None:
        tmp = self.directory / (envelope.queue_id + ENVELOPE + TMP)
        try:
            self._write_synced(tmp, encode_envelope(envelope))
        except OSError:
            # A full disk: the previous envelope stays in force; no half-written sibling is left to take space.
            unlink_quietly(tmp)
            raise
        os.rename(tmp, self.envelope_path(envelope.queue_id))
        fsync_directory(self.directory)

    def remove(self, queue_id: str, reuse: bool = True) -> None:
        """
        Drop a finished message, in the store's thread, never in the
        reactor: on a busy file system this can wait on the disk. It is
        posted behind whatever the thread has (a commit waits behind at
        most the removals given before it), and nothing comes back: the
        reactor thread is not woken for it. A crash before then delivers
        the message again; a duplicate is allowed, a loss is not.

        With `reuse`, the file is retired to become a spare (_retire_sync):
        only for a message nothing reads any more. Without it (an admin's
        removal, which may overtake a delivery still reading the body from
        the file), the files are deleted: a reader keeps what it opened.
        """
        self._post(self._retire_sync if reuse else self._remove_sync, queue_id)

    def _remove_sync(self, queue_id: str) -> None:
        for path in (self.body_file(queue_id), self._envelope_file(queue_id)):
            unlink_quietly(path)

    def _retire_sync(self, queue_id: str) -> None:
        """
        Any envelope file first (alone, it is removed as a leftover at
        start); then the queue file goes to the spare allocator, which
        keeps it for reuse (no longer a message) or deletes it.
        """
        unlink_quietly(self._envelope_file(queue_id))
        self.spares.retire(self.body_file(queue_id))

    # --- start-up ---------------------------------------------------------------

    def adopt(self, other: Path) -> int:
        """
        Take in the messages of another queue folder (a worker this node no
        longer runs); before recover(). Queue files first, then envelope
        files: interrupted, the rest is still in `other` and the next start
        moves it. Returns how many queue files moved.
        """
        self.prepare()
        moved = 0
        for suffix in (BODY, ENVELOPE):
            for path in sorted(other.glob("*" + suffix)):
                os.replace(path, self.directory / path.name)
                moved += suffix == BODY
        if moved:
            fsync_directory(self.directory)
            fsync_directory(other)
            log.warn("queue: took in {count} messages from {directory} (a worker no longer run)", count=moved, directory=str(other))
        return moved

    def recover(self) -> list[Envelope]:
        """Clean up after a crash; return every committed message."""
        self.prepare()
        names = {p.name for p in self.directory.iterdir() if p.is_file()}
        names_seen = names | {p.name for d in (self.corrupt_directory, self.failed_directory) for p in d.iterdir()}
        self.highest_id = max((int(n.split(".")[0]) for n in names_seen if n.split(".")[0].isdigit()), default=0)
        committed = []
        spares = 0
        for name in sorted(names):
            path = self.directory / name
            if name.endswith(BODY) and name[: -len(BODY)] + ENVELOPE not in names and is_spare(path):
                path.unlink()
                spares += 1
            elif name.endswith(TMP):
                path.unlink()
                log.info("queue: removed unfinished envelope {name}", name=name)
            elif name.endswith(ENVELOPE) and name[: -len(ENVELOPE)] + BODY not in names:
                path.unlink()
                log.info("queue: removed the envelope of a message already gone {name}", name=name)
            elif name.endswith(BODY):
                envelope = self._load(name[: -len(BODY)])
                if envelope is not None:
                    committed.append(envelope)
        if spares:
            log.info("queue: removed {count} unused spare files", count=spares)
        return committed

    def _load(self, queue_id: str) -> Envelope | None:
        path = self.body_path(queue_id)
        updated = self.envelope_path(queue_id)
        try:
            envelope_file = updated.read_bytes() if updated.exists() else None
            try:
                trailer_json, body_size = read_trailer(path)
            except NoTrailer:
                if envelope_file is None:
                    # Died while writing it: never acknowledged.
                    path.unlink()
                    log.info("queue: removed a message never committed {name}", name=path.name)
                    return None
                # The legacy format: the body alone, its envelope beside it.
                trailer_json, body_size = None, path.stat().st_size
            return decode_message(queue_id, trailer_json, body_size, envelope_file)
        except StaleSpare as finished:
            # A spare reused from a finished message's file (remove), renamed on disk while
            # its zeroed footer was not yet: what it holds was already delivered or removed.
            path.unlink()
            log.info("queue: removed spare {name}, a reused file still holding finished message {queue_id}",
                     name=path.name, queue_id=str(finished))
            return None
        except (OSError, ValueError) as e:
            self._set_aside(queue_id, str(e))
            return None

    def set_failed(self, queue_id: str) -> None:
        """Move a message whose delivery failed for good to failed/ (its envelope file too, if it has one)."""
        for path in (self.body_path(queue_id), self.envelope_path(queue_id)):
            if path.exists():
                os.replace(path, self.failed_directory / path.name)
        log.warn("queue: {queue_id} failed for good; kept in {directory}", queue_id=queue_id, directory=str(self.failed_directory))

    def _set_aside(self, queue_id: str, reason: str) -> None:
        for path in (self.body_path(queue_id), self.envelope_path(queue_id)):
            if path.exists():
                os.replace(path, self.corrupt_directory / path.name)
        log.error("queue: set aside unreadable message {queue_id}: {reason}", queue_id=queue_id, reason=reason)
