"""
The durable message store: one body file and one envelope file per message.

Order of a commit (and why a crash at any point loses nothing acknowledged):

1. the body (`<id>.eml`) is written while DATA streams in (or kept in
   memory if small, and written at the commit);
2. the envelope is written to `<id>.json.tmp`; body and envelope are fsynced;
3. the envelope is renamed to `<id>.json` (the commit marker);
4. the directory is fsynced; only then does the client get its 250.

On start, `recover` deletes bodies without an envelope and stray `.tmp`
files (never acknowledged), and moves any envelope that does not parse or
whose body is missing or of the wrong size to `corrupt/`, logged, never
fatal. Commits arriving while one is in flight wait and go together in the
next batch: one thread hop and one directory fsync per batch, not per message
(group commit). Small bodies are held in memory until their commit, so the
reactor thread never waits on the file system for them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from gateway.envelope import Envelope

log = Logger(namespace="exgateway.queue")

BODY = ".eml"
ENVELOPE = ".json"
TMP = ".tmp"
WRITE_BUFFER = 64 * 1024


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoredBody:
    """
    A queued message's body for a delivery attempt: its file, and for the
    first attempt of a small message the same bytes still in memory, so the
    hot path does not open and read back what it has just written.
    """

    __slots__ = ("path", "data")

    def __init__(self, path: Path, data: bytes | None = None) -> None:
        self.path = path
        self.data = data

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")


class QueueEntry:
    """
    A message being received. Small bodies stay in memory until the commit,
    where the committing thread creates, writes and syncs the file, so the
    reactor thread does no file-system work for them; past SPILL bytes the
    body goes to its file as it arrives, so a large message is never held
    whole in memory.
    """

    __slots__ = ("queue_id", "path", "file", "size", "_chunks", "kept")

    SPILL = 256 * 1024

    def __init__(self, queue_id: str, path: Path) -> None:
        self.queue_id = queue_id
        self.path = path
        self.file = None
        self.size = 0
        self._chunks: list[bytes] = []
        # The whole body, if it never left memory before the commit.
        self.kept: bytes | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.file is not None:
            self.file.write(data)
            return
        self._chunks.append(data)
        if self.size > self.SPILL:
            self._open(b"".join(self._chunks))

    def _open(self, first: bytes) -> None:
        self.file = open(self.path, "xb", buffering=WRITE_BUFFER)
        self._chunks = []
        self.file.write(first)

    def flush(self) -> None:
        """Put every byte in the body file, ready for fsync."""
        if self.file is None:
            self.kept = b"".join(self._chunks)
            self._open(self.kept)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self._chunks = []


class QueueStore:
    """Files in one directory; blocking work runs through `run_in_thread`."""

    def __init__(self, directory: Path, run_in_thread: Callable[..., Deferred]) -> None:
        self.directory = Path(directory)
        self.corrupt_directory = self.directory / "corrupt"
        self.failed_directory = self.directory / "failed"
        self._run = run_in_thread
        self._pending: list[tuple[QueueEntry, Envelope, Deferred]] = []
        self._removals: list[str] = []
        self._removing = False
        self._committing = False
        # The highest queue id found on disk at recovery (ids are integers).
        self.highest_id = 0

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.corrupt_directory.mkdir(exist_ok=True)
        self.failed_directory.mkdir(exist_ok=True)

    def body_path(self, queue_id: str) -> Path:
        return self.directory / (queue_id + BODY)

    def envelope_path(self, queue_id: str) -> Path:
        return self.directory / (queue_id + ENVELOPE)

    def exists(self, queue_id: str) -> bool:
        return self.body_path(queue_id).exists() or self.envelope_path(queue_id).exists()

    # --- receiving ------------------------------------------------------

    def create(self, queue_id: str) -> QueueEntry:
        return QueueEntry(queue_id, self.body_path(queue_id))

    def discard(self, entry: QueueEntry) -> None:
        """Forget a message that was never acknowledged."""
        spilled = entry.file is not None
        entry.close()
        if spilled:
            try:
                entry.path.unlink()
            except FileNotFoundError:
                pass

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
        Step 1-2, in the reactor thread: the body's last bytes and the
        envelope go to the page cache (fast; no fsync here). Doing this in
        the committing thread instead cost a GIL hand-off per system call
        while the reactor was busy: about 14 ms for a batch of 19.
        """
        tmp = self.directory / (entry.queue_id + ENVELOPE + TMP)
        fd = None
        try:
            entry.flush()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, envelope.to_json())
        except OSError as e:
            entry.close()
            if fd is not None:
                os.close(fd)
            return e
        return (entry, fd, tmp)

    def _sync_batch(self, batch: list) -> list:
        """In a thread: steps 3-4 for a batch."""
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
        fsync every body and envelope of the batch, rename the envelopes into
        place, fsync the directory once. results[i] is None if item i is
        durable, else the exception that failed it: one bad file fails one
        message, not the batch.
        """
        results[:] = [p if isinstance(p, Exception) else None for p in batch]
        try:
            for i, p in enumerate(batch):
                if results[i] is None:
                    entry, fd, _ = p
                    errors = self._fsync_all([entry.file.fileno(), fd])
                    results[i] = next((e for e in errors if e is not None), None)
        finally:
            for p in batch:
                if not isinstance(p, Exception):
                    p[0].close()
                    os.close(p[1])
        yield "synced"
        for i, p in enumerate(batch):
            if results[i] is None:
                os.rename(p[2], self.envelope_path(p[0].queue_id))
        yield "renamed"
        fsync_directory(self.directory)
        yield "directory synced"

    @staticmethod
    def _fsync_all(fds: list[int]) -> list[Exception | None]:
        """
        fsync each file of a batch, one after the other in this thread.
        (Concurrent fsyncs from a pool of threads were tried: fewer
        milliseconds of disk wait, but the extra threads fought the reactor
        for the GIL and throughput fell; see bench/RESULTS.md.)
        """
        errors: list[Exception | None] = []
        for fd in fds:
            try:
                os.fsync(fd)
                errors.append(None)
            except OSError as e:
                errors.append(e)
        return errors

    @staticmethod
    def _write_synced(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- after delivery attempts -------------------------------------------

    def update(self, envelope: Envelope) -> Deferred:
        """Durably replace a message's envelope (new recipient states)."""
        return self._run(self._update_sync, envelope)

    def _update_sync(self, envelope: Envelope) -> None:
        tmp = self.directory / (envelope.queue_id + ENVELOPE + TMP)
        self._write_synced(tmp, envelope.to_json())
        os.rename(tmp, self.envelope_path(envelope.queue_id))
        fsync_directory(self.directory)

    def remove(self, queue_id: str) -> None:
        """
        Drop a finished message: the envelope first, so a crash leaves no
        half. The unlinks run in a thread, batched, apart from commits: on a
        busy file system an unlink can wait on the journal, and neither the
        reactor nor a waiting 250 should. A crash before then delivers the
        message again; a duplicate is allowed, a loss is not.
        """
        self._removals.append(queue_id)
        if not self._removing:
            self._next_removals()

    def _next_removals(self, _=None) -> None:
        removals, self._removals = self._removals, []
        self._removing = bool(removals)
        if removals:
            self._run(self._remove_sync, removals).addBoth(self._next_removals)

    def _remove_sync(self, queue_ids: list[str]) -> None:
        for queue_id in queue_ids:
            for path in (self.envelope_path(queue_id), self.body_path(queue_id)):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    # --- start-up ---------------------------------------------------------------

    def adopt(self, other: Path) -> int:
        """
        Take in the committed messages of another queue folder (a worker this
        node no longer runs); before recover(). Body first, then envelope:
        interrupted between the two, the envelope is still in `other` and the
        next start moves it after its body. Returns how many moved.
        """
        self.prepare()
        moved = 0
        for envelope in sorted(other.glob("*" + ENVELOPE)):
            queue_id = envelope.name[: -len(ENVELOPE)]
            body = other / (queue_id + BODY)
            if body.exists():
                os.replace(body, self.body_path(queue_id))
            os.replace(envelope, self.envelope_path(queue_id))
            moved += 1
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
        for name in sorted(names):
            path = self.directory / name
            if name.endswith(TMP):
                path.unlink()
                log.info("queue: removed unfinished envelope {name}", name=name)
            elif name.endswith(BODY) and name[: -len(BODY)] + ENVELOPE not in names:
                path.unlink()
                log.info("queue: removed body never committed {name}", name=name)
            elif name.endswith(ENVELOPE):
                queue_id = name[: -len(ENVELOPE)]
                envelope = self._load(queue_id)
                if envelope is not None:
                    committed.append(envelope)
        return committed

    def _load(self, queue_id: str) -> Envelope | None:
        path = self.envelope_path(queue_id)
        body = self.body_path(queue_id)
        try:
            envelope = Envelope.from_json(path.read_bytes())
            if envelope.queue_id != queue_id:
                raise ValueError(f"envelope names queue id {envelope.queue_id!r}")
            size = body.stat().st_size
            if size != envelope.size:
                raise ValueError(f"body has {size} bytes, envelope says {envelope.size}")
            return envelope
        except (OSError, ValueError) as e:
            self._set_aside(queue_id, str(e))
            return None

    def set_failed(self, queue_id: str) -> None:
        """Move a message whose delivery failed for good to failed/, envelope last."""
        for path in (self.body_path(queue_id), self.envelope_path(queue_id)):
            os.replace(path, self.failed_directory / path.name)
        log.warn("queue: {queue_id} failed for good; kept in {directory}", queue_id=queue_id, directory=str(self.failed_directory))

    def _set_aside(self, queue_id: str, reason: str) -> None:
        for path in (self.envelope_path(queue_id), self.body_path(queue_id)):
            if path.exists():
                os.replace(path, self.corrupt_directory / path.name)
        log.error("queue: set aside unreadable message {queue_id}: {reason}", queue_id=queue_id, reason=reason)
