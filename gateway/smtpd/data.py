"""
The message body stream: find the end of DATA, turn bare CR and LF into
CRLF, unstuff dots, in bulk.

Per-line callbacks are the main cost of a Python SMTP server, so every stage
works on whole chunks with bytes operations (find, count, replace, a regex
substitution), all of which run in C, and keeps a few bytes of state between
chunks; nothing holds a line or the message.

The message ends only at `<CRLF>.<CRLF>` in the bytes as received (the start
of DATA counts as a line start). `<LF>.<LF>`, `<CR>.<CR>`, `<LF>.<CRLF>` and
the like never end it (the SMTP smuggling class, CVE-2023-51764): they stay
message content. A bare LF or bare CR inside the content is turned into CRLF
(Postfix's `smtpd_forbid_bare_newline = normalize`): Unix text sent by curl,
smtplib or a script arrives as the sender meant it, and a next hop that
would read a bare LF as a line end sees only CRLF lines, which the outbound
client dot-stuffs, so a smuggled "end" can never reach it as one. The
connector may refuse such messages instead (`bare_linefeeds = "reject"`);
LineEndings records which kind it saw, so the refusal names it.

Lines longer than RFC 5321's 998 octets are accepted and passed on unchanged
(Postfix and Exchange accept them too); nothing here buffers a line.

Dot-unstuffing runs after normalisation, so a line that began after a bare
LF is unstuffed like any other (a client that stuffs its LF-only lines, as
smtplib does, gets its bytes back exactly).

What a chunk costs (5 MB messages are 80 64 KB reads): scans over the bytes,
not copies (a 64 KB copy is about 1 us, a scan 20-50 us). So each stage asks
first whether it has anything to do, with the cheapest scan that can say no:
a dot after a CRLF is needed both for `<CRLF>.<CRLF>` and for a stuffed
line, and the dots of a chunk are found by memchr (under 1 us for 64 KB
without one; base64 attachments, the usual large body, have none; a header
has a few, none at a line's start: gateway/linestart.py); the bare CR/LF
check is two `translate`s and one comparison (every CR at i has an LF at
i + 1 and every LF one CR before it) instead of three counts, one of them
the slow two-byte `\r\n`. Only a chunk that has something to fix pays for
the fixing.
"""

from __future__ import annotations

import re

from gateway.linestart import may_start_a_line_with_dot

END = b"\r\n.\r\n"
# The most bytes at the end of a chunk that can still be a prefix of END.
_HOLD = len(END) - 1
_LINE_END = re.compile(rb"\r\n|\r|\n")
# bytes.translate tables: 1 where a byte is CR (LF), 0 elsewhere.
_CR = bytes(1 if b == 13 else 0 for b in range(256))
_LF = bytes(1 if b == 10 else 0 for b in range(256))


class LineEndings:
    """
    Turns bare CR and bare LF into CRLF in a stream cut anywhere, and records
    which it saw. A CR at the end of a chunk is held until the next byte
    shows whether an LF follows it.
    """

    __slots__ = ("_cr", "bare_lf", "bare_cr")

    def __init__(self) -> None:
        self._cr = False
        self.bare_lf = False
        self.bare_cr = False

    @property
    def bare_newline(self) -> bool:
        return self.bare_lf or self.bare_cr

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data[-1:] == b"\r":
            data = data[:-1]
            self._cr = True
        # No bare CR or LF: the CRs shifted one on are exactly the LFs, and
        # neither an LF first nor a CR last (the held one put back before a
        # second held one) has a partner here.
        if data[:1] != b"\n" and data[-1:] != b"\r" and data.translate(_CR)[:-1] == data.translate(_LF)[1:]:
            return data
        crlf = data.count(b"\r\n")
        lf, cr = data.count(b"\n"), data.count(b"\r")
        self.bare_lf = self.bare_lf or lf != crlf
        self.bare_cr = self.bare_cr or cr != crlf
        return _LINE_END.sub(b"\r\n", data)

    def end(self) -> bytes:
        """The content is complete: a CR held at its very end is bare."""
        if not self._cr:
            return b""
        self._cr = False
        self.bare_cr = True
        return b"\r\n"


class DataDecoder:
    """Feed raw DATA bytes; get normalised, unstuffed content and, at the end, the rest."""

    __slots__ = ("_buf", "_context", "size", "check")

    def __init__(self) -> None:
        # Two bytes of context in each stage: the start of DATA is a line start.
        self._buf = b"\r\n"
        self._context = b"\r\n"
        self.size = 0
        self.check = LineEndings()

    @property
    def bare_newline(self) -> bool:
        return self.check.bare_newline

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        """
        Consume a chunk. Returns (content, rest): content is message bytes to
        append; rest is None while the message goes on, else the bytes that
        followed `<CRLF>.<CRLF>` (pipelined commands).
        """
        buf = self._buf + chunk
        # No dot after a CRLF, no end (memchr, where the five-byte search is a
        # scan). buf starts with the two bytes kept from before: no context.
        end = buf.find(END) if may_start_a_line_with_dot(buf, b"") else -1
        if end >= 0:
            stop, rest = end + 2, buf[end + 5 :]
        else:
            stop, rest = len(buf) - _HOLD, None
            if stop <= 2:
                self._buf = buf
                return b"", None
        # The end search keeps the last two raw bytes it passed on as context.
        raw, self._buf = buf[2:stop], buf[stop - 2 :]
        normal = self.check.feed(raw)
        if rest is not None:
            # Content before <CRLF>.<CRLF> ends in CRLF: nothing is held.
            normal += self.check.end()
        if may_start_a_line_with_dot(normal, self._context):
            both = self._context + normal
            content = both.replace(b"\r\n.", b"\r\n")[len(self._context) :]
        else:
            # Nothing to unstuff: a stuffed line needs a dot after a CRLF in this chunk.
            content = normal
        self._context = (self._context + normal[-2:])[-2:]
        self.size += len(content)
        return content, rest
