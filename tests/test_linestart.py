"""gateway/linestart.py: never "no" where a line starts with a dot, and "no" for the dotted header chunk it is for."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.linestart import DOTS_LOOKED_AT, may_start_a_line_with_dot

contexts = st.sampled_from([b"\r\n", b"x\r", b"\n\r", b"ab", b"\r\n\r", b""])
chunks = st.lists(st.sampled_from([b".", b"\r\n", b"\r", b"\n", b"x", b"\r\n.", b"a.b"]), max_size=30).map(b"".join)


@given(chunks, contexts)
@example(b".", b"\r\n")
@example(b"\n.", b"x\r")
@example(b"x.", b"\r\n")
def test_no_only_where_no_dot_follows_a_crlf(chunk, context):
    answer = may_start_a_line_with_dot(chunk, context)
    truth = b"\r\n." in context[-2:] + chunk
    if truth:
        assert answer
    if chunk.count(b".") <= DOTS_LOOKED_AT:
        # Few dots: every one was looked at, so the answer is exact.
        assert answer == truth


def test_a_header_chunk_with_dots_none_at_a_line_start():
    header = b"From: <app@devices.example>\r\nTo: <bench@corp.example>\r\nMessage-Id: <3efd.0003@vm>\r\n\r\n"
    chunk = header + b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n" * 800
    assert may_start_a_line_with_dot(chunk, b"\r\n") is False


def test_a_dot_at_the_start_of_the_body_or_after_a_crlf_split_from_it():
    assert may_start_a_line_with_dot(b".hidden\r\n", b"\r\n")
    assert may_start_a_line_with_dot(b"\n.hidden\r\n", b"x\r")
    assert not may_start_a_line_with_dot(b".hidden\r\n", b"x\r")


def test_more_dots_than_it_looks_at_is_left_to_the_search():
    """Prose: a dot every sentence, none at a line's start; the caller's search answers instead."""
    prose = b"One. Two. Three. Four. Five. Six. Seven. Eight. Nine.\r\n"
    assert prose.count(b".") > DOTS_LOOKED_AT
    assert may_start_a_line_with_dot(prose, b"\r\n")
