"""
Spare queue files: made ahead for new messages, and delivered messages'
files kept to become spares again (ISpareAllocator, for QueueStore).

A spare is a queue file under the next queue id whose name is already on
disk: made a few at a time in the store's thread and made durable there
with one directory fsync. A message written into one needs only its file's
fsync before its 250, not the directory's too.

With `reuse`, a delivered message's file is not deleted but retired: its
footer zeroed in place (gateway/queue/format.py: no longer a message), then
renamed into a spare when more are made, the next message written over it
and the file cut to that message's length. The file system then neither
frees nor allocates blocks for a message; on the machine measured that was
worth a fifth of a lone session's time (bench/RESULTS.md, session 7, and
the side-by-side run of reuse on and off recorded there). A spare is empty
(new) or ends in a zeroed footer (reused), never in a valid one; a stop
removes spares and retired files, and the store's recovery deletes any a
crash left.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from gateway.files import fsync_directory
from gateway.interfaces import ISpareAllocator
from gateway.queue.entry import create_file, unlink_quietly
from gateway.queue.format import BODY, FOOTER_LEN, ZEROED_FOOTER

log = Logger(namespace="exgateway.queue")


class Spare(NamedTuple):
    """A spare file ready for a new message: its queue id, its open descriptor, and whether it held a message before."""

    queue_id: str
    fd: int
    recycled: bool


@implementer(ISpareAllocator)
class SpareFiles:
    """
    Spares for the queue directory `directory`, made through `run_in_thread`
    (the store's thread). Only that thread retires files and takes retired
    ones; the reactor thread takes spares and asks for more.
    """

    # Spare files kept ready for new messages; more are made when half are used.
    SPARES = 16
    # Delivered messages' files kept for reuse as spares (at most, and at most this big each).
    RETIRED_MAX = 2 * SPARES
    RETIRED_SIZE_MAX = 256 * 1024

    def __init__(self, directory: Path, run_in_thread: Callable[..., Deferred], reuse: bool = True) -> None:
        self.directory = Path(directory)
        self._prefix = str(self.directory) + os.sep
        self._run = run_in_thread
        self.reuse = reuse
        # Spares whose names are durable, oldest first.
        self._spares: deque[Spare] = deque()
        # Files of delivered messages, no longer valid queue files, waiting to become spares.
        self._retired: deque[str] = deque()
        self._making = False
        self._error: str | None = None
        self._stopped = False

    def _path(self, queue_id: str) -> str:
        return self._prefix + queue_id + BODY

    def take(self) -> Spare | None:
        """The oldest ready spare, or None if there is none (the message then gets a file of its own)."""
        return self._spares.popleft() if self._spares else None

    def replenish(self, new_id: Callable[[], int]) -> None:
        """
        When half the spares are used, make more meanwhile, under ids from
        `new_id` so queue ids stay unique (a message that finds no spare may
        get a higher id than one that later takes a spare).
        """
        if len(self._spares) <= self.SPARES // 2 and not self._making and not self._stopped:
            self._making = True
            d = self._run(self._create, [str(new_id()) for _ in range(self.SPARES - len(self._spares))])
            d.addCallbacks(self._made, self._failed)

    def _create(self, queue_ids: list[str]) -> list[Spare]:
        """In the store's thread: a retired file renamed, or else a new file, under each id; then one directory fsync."""
        made: list[Spare] = []
        try:
            # One at a time, so that a failure drops those already made.
            for queue_id in queue_ids:
                made.append(self._reuse_retired(queue_id) or Spare(queue_id, create_file(self._path(queue_id)), False))  # noqa: PERF401
            fsync_directory(self.directory)
        except OSError:
            self._drop(made)
            raise
        return made

    def _reuse_retired(self, queue_id: str) -> Spare | None:
        """A retired file as the spare `queue_id`, open for writing over; None if none is left."""
        while self._retired:
            retired = self._retired.popleft()
            path = self._path(queue_id)
            try:
                os.rename(retired, path)
            except FileNotFoundError:
                continue
            try:
                return Spare(queue_id, os.open(path, os.O_WRONLY | os.O_CLOEXEC), True)
            except OSError:
                unlink_quietly(path)
                raise
        return None

    def _made(self, made: list[Spare]) -> None:
        self._making = False
        self._error = None
        if self._stopped:
            self._drop(made)
        else:
            self._spares.extend(made)

    def _failed(self, failure) -> None:
        # New messages fall back to files of their own; the next one asks again (logged once per new error).
        self._making = False
        if failure.getErrorMessage() != self._error:
            self._error = failure.getErrorMessage()
            log.warn("queue: could not make spare files in {directory}: {error}", directory=str(self.directory), error=self._error)

    def _drop(self, spares) -> None:
        for spare in spares:
            os.close(spare.fd)
            unlink_quietly(self._path(spare.queue_id))

    def retire(self, path: str) -> None:
        """
        In the store's thread, for a delivered message's queue file (its
        envelope file already gone): with `reuse`, the file stops being a
        message (its footer zeroed in place) and waits to be renamed into a
        spare; a crash leaves it to recovery, which deletes it as a spare.
        Without reuse, big files, and any past RETIRED_MAX, it is deleted.
        """
        if not self.reuse:
            unlink_quietly(path)
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            keep = FOOTER_LEN <= size <= self.RETIRED_SIZE_MAX and len(self._retired) < self.RETIRED_MAX and not self._stopped
            if keep:
                os.pwrite(fd, ZEROED_FOOTER, size - FOOTER_LEN)
        finally:
            os.close(fd)
        if keep:
            self._retired.append(path)
        else:
            unlink_quietly(path)

    def stop(self) -> None:
        """Remove the spare and retired files (a crash leaves them to the next start's recovery)."""
        self._stopped = True
        spares, self._spares = list(self._spares), deque()
        self._drop(spares)
        while True:
            try:
                unlink_quietly(self._retired.popleft())
            except IndexError:
                break
