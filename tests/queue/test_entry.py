"""gateway/queue/entry.py: a queue file being written (QueueEntry) and its body being read (StoredBody)."""

import os

import pytest

from gateway.queue.entry import QueueEntry, StoredBody, create_file, write_all

BODY = b"Subject: t\r\n\r\nhello\r\n"
TRAILER = b'{"queue_id": "1"}\n#footer\n'


def test_a_small_body_is_written_with_its_trailer_at_the_flush_and_kept_in_memory(tmp_path):
    """Nothing touches the disk before the flush; then body and trailer are the file, and the body stays for the first attempt."""
    path = tmp_path / "1.eml"
    entry = QueueEntry("1", str(path))
    entry.write(BODY[:5])
    entry.write(BODY[5:])
    assert not path.exists() and not entry.opened and entry.size == len(BODY)
    entry.flush(TRAILER)
    entry.close()
    assert path.read_bytes() == BODY + TRAILER and entry.kept == BODY


def test_a_body_past_spill_streams_to_its_file_and_is_not_kept(tmp_path):
    path = tmp_path / "2.eml"
    entry = QueueEntry("2", str(path))
    chunk = b"y" * (QueueEntry.SPILL // 2 + 1)
    entry.write(chunk)
    assert not path.exists()
    entry.write(chunk)
    assert entry.opened and path.exists()
    entry.flush(TRAILER)
    entry.close()
    assert path.read_bytes() == chunk * 2 + TRAILER and entry.kept is None


def test_a_recycled_spare_is_written_over_and_cut_to_the_new_length(tmp_path):
    """A retired file reused: its old bytes past the new message's end are cut off, not left behind the trailer."""
    path = tmp_path / "3.eml"
    path.write_bytes(b"o" * 10_000)
    entry = QueueEntry("3", str(path), os.open(path, os.O_WRONLY), recycled=True)
    assert entry.spare and entry.opened
    entry.write(BODY)
    entry.flush(TRAILER)
    entry.close()
    assert path.read_bytes() == BODY + TRAILER


def test_a_new_spare_is_not_cut(tmp_path):
    path = tmp_path / "4.eml"
    fd = create_file(path)
    entry = QueueEntry("4", str(path), fd)
    entry.write(BODY)
    entry.flush(TRAILER)
    assert entry.fileno() == fd
    entry.close()
    assert path.read_bytes() == BODY + TRAILER


def test_an_entry_without_a_file_has_no_fileno_and_names_are_never_reused(tmp_path):
    entry = QueueEntry("5", str(tmp_path / "5.eml"))
    with pytest.raises(ValueError):
        entry.fileno()
    (tmp_path / "6.eml").write_bytes(b"")
    with pytest.raises(FileExistsError):
        create_file(tmp_path / "6.eml")


def test_a_stored_body_reads_the_body_and_never_the_trailer(tmp_path):
    path = tmp_path / "7.eml"
    path.write_bytes(BODY + TRAILER)
    with StoredBody(str(path), size=len(BODY)).open() as f:
        assert f.read() == BODY
    with StoredBody(str(path), size=len(BODY)).open() as f:
        assert b"".join(iter(lambda: f.read(3), b"")) == BODY
    with StoredBody(str(path), data=b"in memory").open() as f:
        assert f.read() == b"in memory"
    with pytest.raises(ValueError):
        StoredBody(str(path)).open()


def test_write_all_carries_on_after_a_short_write(tmp_path, monkeypatch):
    path = tmp_path / "8.eml"
    fd = create_file(path)
    real = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, buffers: real(fd, [bytes(buffers[0][:3])]))
    try:
        write_all(fd, b"abcdefgh", b"", b"ijk")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abcdefghijk"
