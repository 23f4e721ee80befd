"""
A message's header section as raw fields, for the hub's own edits
(address rewriting, DKIM signing) on the bytes the intake has buffered.

The bytes are never re-encoded or refolded: a field is its name and its raw
lines (folding, comments and the line ends included), so whatever is not
deliberately changed goes out exactly as it came in.
"""

from __future__ import annotations

import re

# A header field's first line: its name, then the colon. RFC 5322's obsolete
# syntax (4.5.3) allows white space before the colon (`Received : from x`);
# receivers read that as a field, so every scanner here must too, or a filter
# that stops at it lets the fields after it through unread.
FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def header_end(line: bytes) -> bytes:
    """
    What a filter writes before `line`, the line that ends the header
    section: nothing before the blank line; before anything else (a body
    line, or the end of a message that is all header) a CRLF, so that line
    and everything after it stay body for every later reader, as they were
    for the filter. Without it, `X-Org: 1` after a line no filter took for a
    field would be read downstream as the header field it was not checked as.
    """
    return b"" if line in (b"\r\n", b"\n") else b"\r\n"


def header_length(data: bytes | bytearray) -> tuple[int, bool]:
    """
    (length of the header section at the start of `data`, whether a blank
    line ends it). The section ends at the first line that is neither a
    field nor a continuation, as gateway/headers.py finds it; the blank
    line itself is not counted.
    """
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos : end + 1]
        if not (FIELD.match(line) or (pos > 0 and line[:1] in (b" ", b"\t"))):
            return pos, line in (b"\r\n", b"\n")
        if end < 0:
            return len(data), False
        pos = end + 1
    return pos, False


def split_fields(header: bytes) -> list[bytes]:
    """The raw fields of a header section, each with its continuation lines and line ends."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def field_name(field: bytes) -> bytes:
    """The lower-cased name of a raw field."""
    return field.partition(b":")[0].strip().lower()
