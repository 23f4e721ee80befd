"""gateway/queue/fsyncs.py: a batch's fsyncs run at once; each file's outcome comes back in order."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from gateway.queue import fsyncs


def test_every_descriptor_is_synced_and_answers_in_order(tmp_path):
    fds = [os.open(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT, 0o600) for i in range(12)]
    try:
        for fd in fds:
            os.write(fd, b"x" * 100)
        assert fsyncs.fsync_all(fds) == [None] * 12
    finally:
        for fd in fds:
            os.close(fd)


def test_one_failing_file_fails_only_itself(monkeypatch):
    """ENOSPC for one descriptor is that message's refusal; its neighbours are durable."""
    synced = []

    def fsync(fd):
        if fd == 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        synced.append(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    errors = fsyncs.fsync_all([5, 6, 7, 8])
    assert [e is None for e in errors] == [True, True, False, True]
    assert isinstance(errors[2], OSError) and errors[2].errno == errno.ENOSPC
    assert sorted(synced) == [5, 6, 8]
    assert fsyncs.fsync_all([7])[0].errno == errno.ENOSPC


def test_the_fsyncs_of_a_batch_are_in_flight_together(monkeypatch):
    """Each call waits until all of the batch have started: one after the other would never get there."""
    width = 4
    barrier = threading.Barrier(width, timeout=10)
    monkeypatch.setattr(os, "fsync", lambda fd: barrier.wait())
    assert fsyncs.fsync_all(list(range(width))) == [None] * width


def test_an_error_that_is_no_os_error_is_raised(monkeypatch):
    """A bug is not a disk error: it surfaces instead of refusing one message."""

    def fsync(fd):
        raise ValueError("bad descriptor type")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ValueError):
        fsyncs.fsync_all([1, 2])


def test_a_forked_child_makes_a_pool_of_its_own(tmp_path):
    """Threads do not survive fork: a child that used the parent's pool would wait for threads it does not have."""
    fsyncs.fsync_all([])
    fsyncs._executor()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            with open(tmp_path / "child", "w") as f:
                ok = fsyncs._pool is None and fsyncs.fsync_all([f.fileno(), f.fileno()]) == [None, None]
        except BaseException:
            ok = False
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
