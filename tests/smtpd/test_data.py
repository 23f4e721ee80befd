"""DataDecoder and dot_stuff: exact unstuffing, end detection and bare line endings."""

from gateway.smtpd.data import DataDecoder, dot_stuff


def decode(stream: bytes, cut: list[int] | None = None):
    """Feed `stream` split at the given offsets; return (content, rest, decoder)."""
    decoder = DataDecoder()
    out = []
    rest = None
    points = [0] + (cut or []) + [len(stream)]
    for a, b in zip(points, points[1:]):
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
    assert not d.bare_newline and not d.line_too_long


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
    assert expected[0] == b"a\r\n.b\r\n\r.\r\n\r\n.\r\nend\r\n"
    for i in range(1, len(stream)):
        assert decode(stream, [i])[:2] == expected, i
        for j in range(i + 1, len(stream)):
            assert decode(stream, [i, j])[:2] == expected, (i, j)


def test_byte_at_a_time():
    """One byte per read still finds the end and unstuffs."""
    stream = b"x\r\n..y\r\n.\r\nRSET\r\n"
    assert decode(stream, list(range(1, len(stream))))[:2] == (b"x\r\n.y\r\n", b"RSET\r\n")


def test_bare_lf_dot_lf_does_not_end_the_message():
    """SMTP smuggling: <LF>.<LF> is not the end, and is flagged as bare LF."""
    content, rest, d = decode(b"a\n.\nMAIL FROM:<x@evil>\r\n.\r\n")
    assert rest == b""
    assert content == b"a\n.\nMAIL FROM:<x@evil>\r\n"
    assert d.bare_newline


def test_bare_cr_is_flagged():
    """<CR>.<CR> hides nothing either: a bare CR is flagged."""
    _, rest, d = decode(b"a\r.\rb\r\n.\r\n")
    assert rest == b"" and d.bare_newline


def test_bare_lf_split_across_reads_is_flagged():
    """A bare LF at the start of a read (after a byte that is not CR) is seen."""
    for cut in range(1, 8):
        _, _, d = decode(b"abc\ndef\r\n.\r\n", [cut])
        assert d.bare_newline, cut


def test_crlf_split_across_reads_is_not_bare():
    """CR at the end of one read and LF at the start of the next is a proper CRLF."""
    stream = b"line one\r\nline two\r\n.\r\n"
    for cut in range(1, len(stream)):
        _, _, d = decode(stream, [cut])
        assert not d.bare_newline, cut


def test_line_of_998_octets_is_fine_999_is_too_long():
    """A text line may hold 998 octets plus CRLF (1000 in all)."""
    _, _, ok = decode(b"a" * 998 + b"\r\n.\r\n", [500])
    assert not ok.line_too_long
    _, _, bad = decode(b"a" * 999 + b"\r\n.\r\n", [500])
    assert bad.line_too_long


def test_size_counts_unstuffed_bytes():
    """Size is the message as stored, after unstuffing."""
    _, _, d = decode(b"..ab\r\n.\r\n")
    assert d.size == len(b".ab\r\n")


def stuff_all(body: bytes, cuts: list[int]) -> bytes:
    context = b"\r\n"
    out = []
    points = [0] + cuts + [len(body)]
    for a, b in zip(points, points[1:]):
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


def test_line_length_check_agrees_with_splitting_lines_in_any_chunking():
    """Lines of every length around the limit, cut anywhere: too long exactly when a line has 1000+ octets before its LF."""
    import random

    from gateway.smtpd.data import LineCheck

    rng = random.Random(5321)
    for _ in range(300):
        lengths = [rng.choice((0, 1, 77, 997, 998, 999, 1000, 1500, 2500)) for _ in range(rng.randint(1, 6))]
        content = b"".join(b"x" * (n - 1) + b"\r\n" if n else b"\r\n" for n in lengths)
        expected = any(len(segment) >= 1000 for segment in content.split(b"\n"))
        check = LineCheck()
        cuts = sorted(rng.sample(range(1, len(content)), min(3, len(content) - 1)))
        for a, b in zip([0] + cuts, cuts + [len(content)]):
            check.feed(content[a:b])
        assert check.line_too_long == expected, (lengths, cuts)
