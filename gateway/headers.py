"""
The header section of a message, found as it streams in.

A message's header section ends at the first empty line, or at the first
line that is neither a header field nor a continuation (a device that sends
plain text after DATA has no header section at all); the filters in front
of the queue (gateway/headerfirewall.py, gateway/policy/headerfrom.py) write
a blank line before such a line, so what is delivered has the same header
section as the one scanned here. The scanner buffers
only that far, which is what the size limit (Exchange's MaxHeaderSize) and
the hub's trace headers need; a frontend, which passes the bytes on as they
come, keeps only the line being read (keep=False). The buffer is a
bytearray: a header sent a few bytes at a time must not cost a copy of all
of it per read.
"""

from __future__ import annotations

import re

from gateway.headerfields import FIELD

DEFAULT_MAX_HEADER_SIZE = 256 * 1024
_MSGID = re.compile(rb"<[^<>\s]+>")


class HeaderScan:
    """
    Buffers the start of a message until its header section is known, then
    tells what the message lacks. Bytes are passed on unchanged.
    """

    __slots__ = (
        "buffer", "done", "has_header", "message_id", "has_date", "too_large", "max_size", "_pos", "_field", "from_value", "subject",
        "_subject_open", "keep", "_start", "received",
    )

    def __init__(self, max_size: int = DEFAULT_MAX_HEADER_SIZE, keep: bool = True) -> None:
        self.max_size = max_size
        self.keep = keep
        self.buffer = bytearray()
        # Where buffer[0] is in the message (lines already scanned are dropped when not kept).
        self._start = 0
        self.done = False
        self.has_header = False
        self.message_id: str | None = None
        self.has_date = False
        self.too_large = False
        self._pos = 0
        self._field = b""
        # The From: field's value, unfolded (send-as checks on the header); None if absent.
        self.from_value: bytes | None = None
        # The Subject: field, unfolded, for the tracking log and notices.
        self.subject: str | None = None
        self._subject_open = False
        # Received: fields seen: the hop count (Exchange's MaxHopCount stops mail loops with it).
        self.received = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while not self.done:
            end = self.buffer.find(b"\n", self._pos)
            if end < 0:
                if self._start + len(self.buffer) > self.max_size:
                    self.too_large = True
                    self.done = True
                break
            line = bytes(self.buffer[self._pos : end + 1])
            self._line(line)
            self._pos = end + 1
        if not self.keep:
            if self.done:
                self.buffer = bytearray()
            elif self._pos:
                del self.buffer[: self._pos]
            self._start += self._pos
            self._pos = 0

    def finish(self) -> None:
        if not self.done and self._pos < len(self.buffer):
            self._line(bytes(self.buffer[self._pos :]))
        self.done = True

    def _line(self, line: bytes) -> None:
        is_field = bool(FIELD.match(line))
        offset = self._start + self._pos
        if offset == 0:
            self.has_header = is_field
        continuation = offset > 0 and line[:1] in (b" ", b"\t")
        if not (is_field or continuation):
            self.done = True
            return
        if offset > self.max_size:
            self.too_large = True
            self.done = True
            return
        if is_field:
            name, _, value = line.partition(b":")
            # `From : x` (obsolete syntax, white space before the colon) is a From: field too.
            self._field = name.rstrip(b" \t").lower()
            if self._field == b"date":
                self.has_date = True
            elif self._field == b"received":
                self.received += 1
            self._subject_open = self._field == b"subject" and self.subject is None
            if self._subject_open:
                self.subject = value.strip().decode("utf-8", "replace")
            elif self._field == b"from":
                # Two From: fields are a spoofing trick: keep both, so every address is checked.
                self.from_value = value.strip() if self.from_value is None else self.from_value + b", " + value.strip()
        else:
            value = line
            if self._field == b"from" and self.from_value is not None:
                self.from_value += b" " + value.strip()
            elif self._subject_open and self.subject is not None:
                self.subject += " " + value.strip().decode("utf-8", "replace")
        if self._field == b"message-id" and not self.message_id:
            m = _MSGID.search(value)
            if m:
                self.message_id = m.group(0).decode("ascii", "replace")
