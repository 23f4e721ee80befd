"""
Whether a line of a chunk of message text may start with a dot.

Both ends of a body look for lines that start with a dot: the DATA decoder
for the end of data (`<CRLF>.<CRLF>`) and for stuffed lines to unstuff
(gateway/smtpd/data.py), the delivery client for lines to stuff
(gateway/deliver/body.py). Each asked first whether the chunk holds a dot
at all (memchr, well under a microsecond for 64 KB) and, if it did, searched
the chunk for `CRLF.`: 25-40 us for 64 KB, and the first chunk of nearly
every message holds a dot (its addresses, its Message-ID) with no line
starting with one. Looking at the few dots one by one is memchr again,
about a microsecond; a chunk with many dots (prose, HTML) is left to the
search after a few.
"""

from __future__ import annotations

# Dots looked at one by one before the caller's search decides instead.
DOTS_LOOKED_AT = 8


def may_start_a_line_with_dot(chunk: bytes, context: bytes) -> bool:
    """
    False only if no line of `chunk` starts with a dot, i.e. no dot follows
    CRLF; `context` is what came before the chunk (its last two bytes
    count; a body's start is b"\\r\\n"). True when one does, or when the
    chunk has more dots than are looked at one by one.
    """
    i = chunk.find(b".")
    for _ in range(DOTS_LOOKED_AT):
        if i < 0:
            return False
        before = chunk[i - 2 : i] if i >= 2 else (context + chunk[:i])[-2:]
        if before == b"\r\n":
            return True
        i = chunk.find(b".", i + 1)
    return i >= 0
