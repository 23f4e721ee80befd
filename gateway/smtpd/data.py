"""
The DATA stream: find the end, unstuff dots, and spot bare CR or LF, in bulk.

Per-line callbacks are the main cost of a Python SMTP server, so the decoder
works on whole chunks with bytes operations (find, count, replace, split),
all of which run in C. The trick that makes this exact across chunk
boundaries: the decoder keeps the last two bytes it already emitted as a
*context* prefix of the next chunk, so `<CRLF>.` and `<CRLF>.<CRLF>` are seen
even when a network read splits them, and never matched twice.

The message ends only at `<CRLF>.<CRLF>` (the start of DATA counts as a line
start). A bare LF or bare CR anywhere in the content is recorded and the
message is refused at the end (the SMTP smuggling class, CVE-2023-51764):
refusing keeps every accepted byte exactly as sent, where normalising would
alter it; the catalogue reply tells the sender why.
"""

from __future__ import annotations

END = b"\r\n.\r\n"
# The most bytes at the end of a chunk that can still be a prefix of END.
_HOLD = len(END) - 1
MAX_TEXT_LINE = 1000


class LineCheck:
    """
    Watches message content, in order and in any chunking, for bare CR or
    LF and for text lines over 1000 octets. Bulk counts, no per-line loop:
    every LF must have a CR before it and every CR an LF after it.
    """

    __slots__ = ("_prev", "_line", "bare_newline", "line_too_long")

    def __init__(self) -> None:
        self._prev = b"\n"
        self._line = 0
        self.bare_newline = False
        self.line_too_long = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if not self.bare_newline:
            buf = self._prev + data
            crlf = buf.count(b"\r\n")
            # CRs before the last byte must be followed by LF; the last waits for the next chunk.
            if buf.count(b"\n", 1) != crlf or buf.count(b"\r", 0, len(buf) - 1) != crlf:
                self.bare_newline = True
        self._prev = data[-1:]
        if not self.line_too_long and not self._lines_fit(data):
            self.line_too_long = True

    def _lines_fit(self, data: bytes) -> bool:
        """
        No line reaches MAX_TEXT_LINE octets before its LF (a text line may
        hold 1000 octets with its CRLF: 999 before the LF). Jumps from the
        last LF of one window of that size to the next, so a chunk costs
        about len/1000 searches in C, not a bytes object per line.
        """
        n, pos, carry = len(data), 0, self._line
        while True:
            # The line at `pos` began `carry` octets earlier (in an earlier chunk).
            window_end = pos + MAX_TEXT_LINE - carry
            if window_end > n:
                last = data.rfind(b"\n", pos)
                self._line = carry + n - pos if last < 0 else n - last - 1
                return True
            last = data.rfind(b"\n", pos, window_end)
            if last < 0:
                return False
            pos, carry = last + 1, 0

    def end(self) -> None:
        """The content is complete: a CR at its very end has no LF after it."""
        if self._prev == b"\r":
            self.bare_newline = True


class DataDecoder:
    """Feed raw DATA bytes; get unstuffed content and, at the end, the rest."""

    __slots__ = ("_buf", "size", "check")

    def __init__(self) -> None:
        # Two bytes of context: the start of DATA is a line start.
        self._buf = b"\r\n"
        self.size = 0
        self.check = LineCheck()

    @property
    def bare_newline(self) -> bool:
        return self.check.bare_newline

    @property
    def line_too_long(self) -> bool:
        return self.check.line_too_long

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        """
        Consume a chunk. Returns (content, rest): content is unstuffed message
        bytes to append; rest is None while the message goes on, else the
        bytes that followed `<CRLF>.<CRLF>` (pipelined commands).
        """
        buf = self._buf + chunk
        end = buf.find(END)
        if end >= 0:
            stop, rest = end + 2, buf[end + 5 :]
        else:
            stop, rest = len(buf) - _HOLD, None
            if stop <= 2:
                self._buf = buf
                return b"", None
        content = buf[:stop].replace(b"\r\n.", b"\r\n")[2:]
        self.check.feed(content)
        self.size += len(content)
        self._buf = buf[stop - 2 :]
        return content, rest


def dot_stuff(chunk: bytes, context: bytes) -> tuple[bytes, bytes]:
    """
    Dot-stuff one chunk of a message for sending, statefully: `context` is
    the last two bytes sent before it (b"\\r\\n" at the start of a body).
    Returns the stuffed bytes and the context for the next chunk.
    """
    buf = context + chunk
    out = buf.replace(b"\r\n.", b"\r\n..")[len(context) :]
    return out, buf[-2:]
