"""gateway/deliver/replies.py: a next hop's bytes into whole replies, on bytes alone (no transport, no clock)."""

import pytest

from gateway.deliver.replies import MAX_REPLY_LINE, GarbledReply, ReplyGroup, ReplyReader, ReplyTooLong


def test_replies_come_out_whole_whatever_the_chunks():
    """A multi-line reply split mid-line and a second reply in the same chunk: two replies, in order, then None."""
    reader = ReplyReader()
    reader.feed(b"250-mail.exa")
    assert reader.next_reply() is None
    reader.feed(b"mple\r\n250-PIPELINING\r\n250 2.0.0 SIZE 10\r\n354 go\r\n")
    first, second = reader.next_reply(), reader.next_reply()
    assert (first.code, first.enhanced, first.text) == (250, "2.0.0", "mail.example\nPIPELINING\nSIZE 10")
    assert (second.code, second.text) == (354, "go") and reader.next_reply() is None


def test_what_came_behind_a_reply_is_counted_and_can_be_dropped():
    """held(): the bytes after the last whole reply (STARTTLS refuses a connection that sent any); clear() forgets them."""
    reader = ReplyReader()
    reader.feed(b"220 go ahead\r\n250-relay\r\n250 PIP")
    assert reader.next_reply().code == 220 and reader.next_reply() is None
    assert reader.held() == len(b"250-relay") + 2 + len(b"250 PIP")
    reader.clear()
    assert reader.held() == 0 and reader.next_reply() is None


def test_a_line_without_a_code_is_garbled():
    """A line that is not three digits first: GarbledReply (the client drops the connection)."""
    reader = ReplyReader()
    reader.feed(b"hello\r\n")
    with pytest.raises(GarbledReply):
        reader.next_reply()


def test_an_endless_line_or_reply_passes_a_bound_and_the_reader_holds_nothing():
    """A line longer than MAX_REPLY_LINE without its end, or 101 lines: ReplyTooLong saying which, and nothing kept."""
    reader = ReplyReader()
    reader.feed(b"2" * (MAX_REPLY_LINE + 1))
    with pytest.raises(ReplyTooLong, match=f"a reply line of more than {MAX_REPLY_LINE} bytes"):
        reader.next_reply()
    assert reader.held() == 0
    reader.feed(b"250-x\r\n" * 101)
    with pytest.raises(ReplyTooLong, match=r"\(101 lines, 505 bytes so far\)"):
        reader.next_reply()
    assert reader.held() == 0


def test_a_pipelined_group_fires_once_with_every_reply_or_its_first_failure():
    """ReplyGroup: three replies, one callback with all three; a failure after one reply errbacks once."""
    from twisted.python.failure import Failure

    reader = ReplyReader()
    reader.feed(b"250 a\r\n250 b\r\n550 c\r\n")
    group, got = ReplyGroup(3), []
    group.deferred.addCallback(got.append)
    for _ in range(3):
        group.callback(reader.next_reply())
    assert [r.text for r in got[0]] == ["a", "b", "c"]
    failing, failed = ReplyGroup(2), []
    failing.deferred.addErrback(failed.append)
    failing.errback(Failure(ReplyTooLong("x")))
    failing.errback(Failure(ReplyTooLong("y")))
    assert len(failed) == 1
