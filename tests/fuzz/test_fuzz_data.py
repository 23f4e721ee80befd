"""
Property-based: the DATA decoder (gateway/smtpd/data.py) gives the same
content and the same end at every split of the stream, its content never
holds a bare CR or LF, and decode(dot_stuff(x)) == x for CRLF text.
"""

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.deliver.body import dot_stuff
from gateway.smtpd.data import DataDecoder, LineEndings

raw_streams = st.lists(st.one_of(st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"x"]),
                                 st.binary(max_size=8)), max_size=30).map(b"".join)


def decode(chunks):
    decoder = DataDecoder()
    content = []
    for n, chunk in enumerate(chunks):
        out, rest = decoder.feed(chunk)
        content.append(out)
        if rest is not None:
            # What follows the end goes back to command reading, with every later read.
            return b"".join(content), rest + b"".join(chunks[n + 1 :]), decoder
    return b"".join(content), None, decoder


@given(raw_streams, st.lists(st.integers(min_value=0, max_value=300), max_size=10))
@example(b"a\r\n.\r\nrest", [3, 4, 5])
@example(b"\r\n.\r\n", [1])
@example(b"a\r", [2])
def test_every_split_gives_the_same_content_and_end(stream, cuts):
    whole = decode([stream])
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    split = decode([stream[a:b] for a, b in itertools.pairwise(points)] or [b""])
    if whole[1] is None:
        # Not ended: the split run may still hold the same tail; content so far is a prefix either way.
        assert split[1] is None
        assert whole[0].startswith(split[0]) or split[0].startswith(whole[0])
    else:
        assert split[:2] == whole[:2]
        assert whole[2].bare_newline == split[2].bare_newline
    content = whole[0]
    assert content.count(b"\r") == content.count(b"\r\n") == content.count(b"\n")


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=10),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=5))
@example([b".", b"..", b""], [1])
def test_decode_of_dot_stuff_is_the_message(lines, sizes):
    """What the delivery client sends (stuffed in chunks of any size) is what the next hop's decoder gives back."""
    message = b"".join(line + b"\r\n" for line in lines)
    wire, context, i, n = [], b"\r\n", 0, 0
    while i < len(message):
        size = sizes[n % len(sizes)]
        out, context = dot_stuff(message[i : i + size], context)
        wire.append(out)
        i, n = i + size, n + 1
    content, rest, decoder = decode([b"".join(wire) + b".\r\n"])
    assert (content, rest, decoder.bare_newline) == (message, b"", False)


@given(st.lists(st.binary(max_size=12), max_size=12))
def test_line_endings_only_ever_emit_crlf(chunks):
    check = LineEndings()
    out = b"".join(check.feed(c) for c in chunks) + check.end()
    assert out.count(b"\r") == out.count(b"\r\n") == out.count(b"\n")
    whole = b"".join(chunks)
    assert check.bare_newline == (whole.count(b"\r\n") != whole.count(b"\n") or whole.count(b"\r\n") != whole.count(b"\r"))
