"""
One message's queue file, seen from each side of the store: QueueEntry
while the intake writes it, StoredBody while a delivery reads its body.

Small bodies stay in memory until their commit, where the reactor thread
writes body and trailer to the file in one system call (the store's thread
fsyncs it), so the reactor never waits on the file system for them; past
QueueEntry.SPILL bytes a body goes to its file as it arrives, so a large
message is never held whole in memory. Readers get the body's bytes only:
the trailer after them (gateway/queue/format.py) stays unread.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from zope.interface import implementer

from gateway.files import PRIVATE_FILE
from gateway.interfaces import IQueueEntry

WRITE_BUFFER = 64 * 1024


def create_file(path: Path | str) -> int:
    """A new queue file, open for writing; FileExistsError if the name is taken (ids are never reused)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)


class BodyReader(io.RawIOBase):
    """The body part of a queue file, read as a stream (the trailer after it stays unread)."""

    def __init__(self, path: Path | str, size: int) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (read until the delivery ends)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        got = self._file.readinto(memoryview(buffer)[:n])
        self._left -= got
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


class StoredBody:
    """
    A queued message's body for a delivery attempt: its file, and for the
    first attempt of a small message the same bytes still in memory, so the
    hot path does not open and read back what it has just written.
    """

    __slots__ = ("path", "data", "size")

    def __init__(self, path: Path | str, data: bytes | None = None, size: int | None = None) -> None:
        self.path = path
        self.data = data
        # The body's length: the queue file goes on with the envelope after it.
        self.size = len(data) if data is not None else size

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.size is None:
            raise ValueError("a body read from its file needs its size (the file goes on with the envelope)")
        return io.BufferedReader(BodyReader(self.path, self.size), WRITE_BUFFER)


@implementer(IQueueEntry)
class QueueEntry:
    """
    A message being received. Small bodies stay in memory until the commit,
    where the reactor thread writes body and trailer to the file in one
    system call (the committing thread fsyncs it); past SPILL bytes the
    body goes to its file as it arrives, so a large message is never held
    whole in memory.
    """

    __slots__ = ("queue_id", "path", "file", "size", "_chunks", "kept", "spare", "recycled", "_fd")

    SPILL = 256 * 1024

    def __init__(self, queue_id: str, path: Path | str, spare_fd: int | None = None, recycled: bool = False) -> None:
        self.queue_id = queue_id
        self.path = path
        # Written into a spare file (QueueStore.open_entry), whose name is already durable.
        self.spare = spare_fd is not None
        # A spare that held a delivered message: written over in place, then cut to this message's length.
        self.recycled = recycled
        # The file's descriptor once it is open (a spare's from the start); `file` wraps it after a spill.
        self._fd = spare_fd
        self.file: BinaryIO | None = None
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
            self.file = file = open(self._open(), "wb", buffering=WRITE_BUFFER)  # noqa: SIM115 (written until the commit)
            file.write(b"".join(self._chunks))
            self._chunks = []

    def _open(self) -> int:
        if self._fd is None:
            self._fd = create_file(self.path)
        return self._fd

    def flush(self, trailer: bytes) -> None:
        """Put every byte of the body, then the trailer, in the file, ready for fsync."""
        if self.file is not None:
            self.file.write(trailer)
            self.file.flush()
        else:
            # Without a BufferedWriter: one writev of what is already in memory.
            self.kept = b"".join(self._chunks)
            self._chunks = []
            write_all(self._open(), self.kept, trailer)
        if self.recycled:
            os.ftruncate(self._open(), self.size + len(trailer))

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"queue entry {self.queue_id} has no file yet")
        return self._fd

    @property
    def opened(self) -> bool:
        """Whether the file exists (a spare, or created at a spill or commit)."""
        return self._fd is not None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        elif self._fd is not None:
            os.close(self._fd)
        self.file = self._fd = None
        self._chunks = []


def write_all(fd: int, *parts: bytes) -> None:
    """Write `parts` in order, however many calls the kernel wants (a regular file usually takes all in one)."""
    views = [memoryview(p) for p in parts if p]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views:
            views[0] = views[0][n:]


def unlink_quietly(path: Path | str) -> None:
    """Remove a file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
