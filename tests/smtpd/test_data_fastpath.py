"""
The chunk fast paths of gateway/smtpd/data.py (memchr for a dot after a CRLF, two
translates for bare CR/LF) give exactly what the plain passes give: each
feed's output, the end, the rest, the flags and the size are compared with a
reference that does every pass on every chunk (the code before the fast
paths), on streams rich in CR, LF and dots, cut anywhere.
"""

from __future__ import annotations

import itertools
import re

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.deliver.body import dot_stuff
from gateway.smtpd.data import DataDecoder, LineEndings

END = b"\r\n.\r\n"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class ReferenceLineEndings:
    def __init__(self) -> None:
        self._cr = False
        self.bare_lf = False
        self.bare_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data[-1:] == b"\r":
            data = data[:-1]
            self._cr = True
        crlf = data.count(b"\r\n")
        lf, cr = data.count(b"\n"), data.count(b"\r")
        if lf == crlf and cr == crlf:
            return data
        self.bare_lf = self.bare_lf or lf != crlf
        self.bare_cr = self.bare_cr or cr != crlf
        return _LINE_END.sub(b"\r\n", data)

    def end(self) -> bytes:
        if not self._cr:
            return b""
        self._cr = False
        self.bare_cr = True
        return b"\r\n"


class ReferenceDecoder:
    def __init__(self) -> None:
        self._buf = b"\r\n"
        self._context = b"\r\n"
        self.size = 0
        self.check = ReferenceLineEndings()

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        buf = self._buf + chunk
        end = buf.find(END)
        if end >= 0:
            stop, rest = end + 2, buf[end + 5 :]
        else:
            stop, rest = len(buf) - 4, None
            if stop <= 2:
                self._buf = buf
                return b"", None
        raw, self._buf = buf[2:stop], buf[stop - 2 :]
        normal = self.check.feed(raw)
        if rest is not None:
            normal += self.check.end()
        both = self._context + normal
        content = both.replace(b"\r\n.", b"\r\n")[len(self._context) :]
        self._context = both[-2:]
        self.size += len(content)
        return content, rest


def reference_stuff(chunk: bytes, context: bytes) -> tuple[bytes, bytes]:
    buf = context + chunk
    return buf.replace(b"\r\n.", b"\r\n..")[len(context) :], buf[-2:]


pieces = st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.\r\n", b"\r\n..", b"\n.", b"x", b"abc", b"\r\r", b"\n\n"])
streams = st.lists(st.one_of(pieces, st.binary(max_size=6)), max_size=40).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


def chunks_of(stream: bytes, at: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c for c in at if c < len(stream))})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


@given(streams, cuts)
@example(b"a\r\n.\r\nrest", [3, 4, 5])
@example(b"abc\r", [4])
@example(b"\nx", [1])
@example(b"x\r\n..y\r\n.\r\n", [3, 4])
@example(b"a\n.b\r\n.\r\n", [2])
@example(b"From: <a@b.example>, <c@d.example>\r\nx.y.z.w.v.u.t\r\n..stuffed\r\n.\r\n", [])
@example(b"From: <a@b.example>\r\n\r\nbody\r\n.\r\n", [30])
def test_decoder_matches_the_reference_feed_by_feed(stream, at):
    fast, slow = DataDecoder(), ReferenceDecoder()
    for chunk in chunks_of(stream, at):
        out = fast.feed(chunk)
        assert out == slow.feed(chunk), chunk
        assert (fast.check.bare_lf, fast.check.bare_cr, fast.size) == (slow.check.bare_lf, slow.check.bare_cr, slow.size)
        if out[1] is not None:
            # The end: what follows goes back to command reading.
            break


@given(st.lists(st.one_of(pieces, st.binary(max_size=6)), max_size=20))
@example([b"a\r", b"\nb"])
@example([b"\n", b"a"])
@example([b"a", b"\n"])
@example([b"\r", b"\r", b"\n"])
def test_line_endings_match_the_reference_feed_by_feed(chunks):
    fast, slow = LineEndings(), ReferenceLineEndings()
    for chunk in chunks:
        assert fast.feed(chunk) == slow.feed(chunk)
        assert (fast.bare_lf, fast.bare_cr) == (slow.bare_lf, slow.bare_cr)
    assert fast.end() == slow.end() and fast.bare_cr == slow.bare_cr


@given(streams, cuts)
@example(b".a\r\n", [1])
@example(b"\r\n.", [1, 2])
@example(b"x\r\n.", [2])
@example(b"x\r", [2])
@example(b"From: <a@b.example>, <c@d.example>\r\nx.y.z.w.v.u.t\r\n.hidden\r\n", [])
def test_dot_stuff_matches_the_reference_chunk_by_chunk(stream, at):
    fast_context = slow_context = b"\r\n"
    for chunk in chunks_of(stream, at):
        fast, fast_context = dot_stuff(chunk, fast_context)
        slow, slow_context = reference_stuff(chunk, slow_context)
        assert (fast, fast_context) == (slow, slow_context)


def test_dot_free_reads_pass_through_whole():
    """A 64 KB read of base64-like lines (no dot, no bare newline): the content is the read, minus the four bytes held."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    read = (line * 900)[:65536]
    d = DataDecoder()
    content, rest = d.feed(read)
    assert rest is None and content == read[:-4] and not d.bare_newline
    content, rest = d.feed(b"\r\n.\r\nQUIT\r\n")
    assert rest == b"QUIT\r\n" and content == read[-4:] + b"\r\n"


def test_a_dot_in_the_held_bytes_alone_still_finds_the_end():
    """The end split so that its dot arrives in one read and the rest in the next."""
    for cut in range(1, 6):
        d = DataDecoder()
        wire = b"line\r\n.\r\nNOOP\r\n"
        first = d.feed(wire[: 4 + cut])
        second = d.feed(wire[4 + cut :])
        assert first[0] + second[0] == b"line\r\n" and second[1] == b"NOOP\r\n", cut


def test_bare_lf_at_a_read_start_after_a_dot_free_read():
    """The first byte of a read is checked too: an LF there (after a byte that is no CR) is bare."""
    d = DataDecoder()
    d.feed(b"aaaaaaaaaaaaaaaa")
    d.feed(b"\nbbbbbbbbbbbbbbbbbbbb")
    _content, rest = d.feed(b"\r\n.\r\n")
    assert rest == b"" and d.check.bare_lf and not d.check.bare_cr


def test_crlf_split_exactly_at_a_read_boundary_is_not_bare():
    e = LineEndings()
    assert e.feed(b"abc\r") == b"abc"
    assert e.feed(b"\ndef") == b"\r\ndef"
    assert not e.bare_newline
