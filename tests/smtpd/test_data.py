"""DataDecoder and dot_stuff: exact unstuffing, end detection, bare line endings normalised, no line limit."""

import itertools

from gateway.deliver.body import dot_stuff
from gateway.smtpd.data import DataDecoder


def decode(stream: bytes, cut: list[int] | None = None):
    """Feed `stream` split at the given offsets; return (content, rest, decoder)."""
    decoder = DataDecoder()
    out = []
    rest = None
    points = [0] + (cut or []) + [len(stream)]
    for a, b in itertools.pairwise(points):
        content, rest = decoder.feed(stream[a:b])
        out.append(content)
        if rest is not None:
            rest += stream[b:]
            break
    return b"".join(out), rest, decoder


def test_simple_message_ends_at_crlf_dot_crlf():
    """The body is everything up to and including the CRLF before the lone dot."""
    content, rest, d = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert content == b"Subject: x\r\n\r\nhello\r\n"
    assert rest == b"QUIT\r\n"
    assert not d.bare_newline


def test_empty_message():
    """A lone dot right after DATA is an empty message."""
    content, rest, _ = decode(b".\r\n")
    assert content == b"" and rest == b""


def test_leading_dots_are_unstuffed_exactly_once():
    """RFC 5321 4.5.2: the first dot of a line is removed, only the first."""
    content, _, _ = decode(b"..\r\n...x\r\n.y\r\nno.dot\r\n.\r\n")
    assert content == b".\r\n..x\r\ny\r\nno.dot\r\n"


def test_first_line_stuffed_dot():
    """DATA starts at a line start, so a stuffed first line is unstuffed too."""
    content, _, _ = decode(b"..hidden\r\n.\r\n")
    assert content == b".hidden\r\n"


def test_every_split_point_gives_the_same_result():
    """Network reads can split anywhere: every single and paired cut decodes identically."""
    stream = b"a\r\n..b\r\n.\r.\r\n\r\n..\r\nend\r\n.\r\nNOOP\r\n"
    expected = decode(stream)[:2]
    # The bare CR in ".\r." ends a line: two one-dot lines, each unstuffed to an empty line.
    assert expected[0] == b"a\r\n.b\r\n\r\n\r\n\r\n.\r\nend\r\n"
    for i in range(1, len(stream)):
        assert decode(stream, [i])[:2] == expected, i
        for j in range(i + 1, len(stream)):
            assert decode(stream, [i, j])[:2] == expected, (i, j)


def test_byte_at_a_time():
    """One byte per read still finds the end and unstuffs."""
    stream = b"x\r\n..y\r\n.\r\nRSET\r\n"
    assert decode(stream, list(range(1, len(stream))))[:2] == (b"x\r\n.y\r\n", b"RSET\r\n")


SMUGGLED = b"MAIL FROM:<ceo@corp.example>\r\nRCPT TO:<x@corp.example>\r\nDATA\r\n"


def test_smuggling_end_sequences_never_end_the_message_and_become_content_lines():
    """<LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF>, <CR>.<CRLF>, <CRLF>.<CR>: none is the end (CVE-2023-51764); each becomes a line, in any chunking."""
    for fake in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r", b"\r.\n"):
        stream = b"Subject: a\r\n\r\nx" + fake + SMUGGLED + b"fake\r\n.\r\nQUIT\r\n"
        expected = (b"Subject: a\r\n\r\nx\r\n\r\n" + SMUGGLED + b"fake\r\n", b"QUIT\r\n")
        assert decode(stream)[:2] == expected, fake
        for cut in range(1, len(stream)):
            content, rest, d = decode(stream, [cut])
            assert (content, rest) == expected, (fake, cut)
            assert d.bare_newline


def test_bare_lf_is_turned_into_crlf_and_recorded_as_lf():
    """curl --upload-file of a Unix text file: every line arrives with CRLF."""
    content, rest, d = decode(b"Subject: x\n\nhello\nworld\r\n.\r\n")
    assert (content, rest) == (b"Subject: x\r\n\r\nhello\r\nworld\r\n", b"")
    assert (d.check.bare_lf, d.check.bare_cr) == (True, False)


def test_bare_cr_is_turned_into_crlf_and_recorded_as_cr():
    content, _, d = decode(b"a\rb\r\r\n.\r\n")
    assert content == b"a\r\nb\r\n\r\n"
    assert (d.check.bare_lf, d.check.bare_cr) == (False, True)


def test_lines_after_a_bare_lf_are_unstuffed_like_any_line():
    """smtplib stuffs the dots of LF-only lines (its regex sees LF as a line start): the sender's text comes back exactly."""
    content, _, _ = decode(b"a\n..b\n...c\r\n.\r\n")
    assert content == b"a\r\n.b\r\n..c\r\n"


def test_bare_lf_split_across_reads_is_normalised():
    """A bare LF at the start of a read (after a byte that is not CR) is seen and fixed."""
    for cut in range(1, 12):
        content, _, d = decode(b"abc\ndef\r\n.\r\n", [cut])
        assert content == b"abc\r\ndef\r\n" and d.check.bare_lf and not d.check.bare_cr, cut


def test_crlf_split_across_reads_is_not_bare():
    """CR at the end of one read and LF at the start of the next is a proper CRLF."""
    stream = b"line one\r\nline two\r\n.\r\n"
    for cut in range(1, len(stream)):
        content, _, d = decode(stream, [cut])
        assert content == b"line one\r\nline two\r\n" and not d.bare_newline, cut


def test_lines_over_998_octets_pass_unchanged_in_any_chunking():
    """No line limit in content: a 1,200-octet cron line and a 100 kB unfolded header arrive byte for byte."""
    body = b"To: " + b"x" * 100_000 + b"\r\n\r\n" + b"c" * 1200 + b"\r\n"
    for cuts in ([], [500], [999, 1001], [50_000, 100_003]):
        content, rest, d = decode(body + b".\r\n", cuts)
        assert (content, rest) == (body, b"") and not d.bare_newline


def test_line_endings_hold_only_a_trailing_cr():
    """State between chunks is one flag: a CR at a chunk's end waits for the next byte; at the very end it is bare."""
    from gateway.smtpd.data import LineEndings

    e = LineEndings()
    assert e.feed(b"abc\r") == b"abc"
    assert e.feed(b"\ndef\r") == b"\r\ndef"
    assert e.feed(b"x") == b"\r\nx" and e.bare_cr and not e.bare_lf
    e = LineEndings()
    assert e.feed(b"end\r") == b"end" and e.end() == b"\r\n" and e.bare_cr


def test_random_streams_decode_as_splitting_on_the_first_true_end():
    """Random bytes rich in CR, LF and dots, cut at random: content is the normalised, unstuffed text before the first raw <CRLF>.<CRLF>."""
    import random
    import re

    rng = random.Random(5321)
    for _ in range(400):
        stream = bytes(rng.choice(b"\r\n.ab") for _ in range(rng.randint(0, 40))) + b"\r\n.\r\nNEXT"
        at = (b"\r\n" + stream).find(b"\r\n.\r\n")
        raw = (b"\r\n" + stream)[2 : at + 2]
        expected = (b"\r\n" + re.sub(rb"\r\n|\r|\n", b"\r\n", raw)).replace(b"\r\n.", b"\r\n")[2:]
        cuts = sorted(rng.sample(range(1, len(stream)), min(3, len(stream) - 1)))
        content, rest, _ = decode(stream, cuts)
        assert (content, rest) == (expected, stream[at + 3 :]), (stream, cuts)


def test_size_counts_unstuffed_bytes():
    """Size is the message as stored, after unstuffing."""
    _, _, d = decode(b"..ab\r\n.\r\n")
    assert d.size == len(b".ab\r\n")


def stuff_all(body: bytes, cuts: list[int]) -> bytes:
    context = b"\r\n"
    out = []
    points = [0, *cuts, len(body)]
    for a, b in itertools.pairwise(points):
        chunk, context = dot_stuff(body[a:b], context)
        out.append(chunk)
    return b"".join(out)


def test_dot_stuffing_is_exact_across_chunk_boundaries():
    """A dot at a line start is doubled even when the chunk boundary falls at CR, LF or the dot."""
    body = b".a\r\n.\r\nx\r\n..b\r\n"
    expected = b"..a\r\n..\r\nx\r\n...b\r\n"
    for i in range(len(body) + 1):
        assert stuff_all(body, [i]) == expected, i


def test_stuff_then_decode_round_trips():
    """What the client stuffs, the server unstuffs to the same bytes."""
    body = b".\r\n..\r\n.x.\r\n\r\n.\r\n"
    wire = stuff_all(body, [3]) + b".\r\n"
    assert decode(wire)[0] == body


def test_a_long_line_streams_through_without_being_held():
    """A 10 MB line with no line end: each read comes out at once (but the 4 bytes that may start the end), nothing accumulates."""
    d = DataDecoder()
    read = b"z" * 65536
    out = 0
    for _ in range(160):
        content, rest = d.feed(read)
        assert rest is None and len(content) >= len(read) - 4
        out += len(content)
    content, rest = d.feed(b"\r\n.\r\n")
    assert rest == b"" and out + len(content) == 160 * 65536 + 2
