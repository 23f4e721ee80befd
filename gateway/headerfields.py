"""
A message's header section as raw fields, for the hub's own edits
(address rewriting, DKIM signing) on the bytes the intake has buffered.

The bytes are never re-encoded or refolded: a field is its name and its raw
lines (folding, comments and the line ends included), so whatever is not
deliberately changed goes out exactly as it came in.
"""

from __future__ import annotations

import re

_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")


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
        if not (_FIELD.match(line) or (pos > 0 and line[:1] in (b" ", b"\t"))):
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
