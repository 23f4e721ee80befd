"""
Reading a next hop's (or a hub's) replies: the bytes split into SMTP
replies, within bounds, and the errors a client raises from what it read.

A server may lie or stream without end: a reply line longer than
MAX_REPLY_LINE, a reply of more than MAX_REPLY_LINES lines or
MAX_REPLY_BYTES bytes, or a line that does not start with three digits
ends the reading (the client drops the connection). Pure: no transport,
no reactor, so the bounds are tested on bytes alone.
"""

from __future__ import annotations

import re

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from gateway.errors import SMTPReply

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3}) ")
MAX_REPLY_LINE = 4096
# One reply from a next hop (or a hub) may be this long at most: a server
# streaming `220-` lines must not grow the process without bound. Postfix
# stops at `line_length_limit` per line; a whole reply has no RFC limit, and
# real ones (EHLO's keyword list, an NDR text) stay far below these.
MAX_REPLY_LINES = 100
MAX_REPLY_BYTES = 64 * 1024


class SMTPClientError(Exception):
    """The server answered something the client could not go on from."""

    def __init__(self, reply: SMTPReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class LoginUnavailable(SMTPClientError):
    """
    The next hop is up, but this connector cannot log in to it (no OAuth
    token, or the token refused twice). Not the address's fault: it is not
    marked bad, no other address is tried with the same credential, and the
    reply (with the decoded reason) becomes the recipients' LastError as is.
    """


class ReplyTooLong(ConnectionLost):
    """
    The server's reply passed MAX_REPLY_LINES or MAX_REPLY_BYTES: the
    connection is dropped, the attempt deferred and the address marked bad.
    A ConnectionLost, so every caller that copes with a broken connection
    (retry elsewhere, defer) copes with this one.
    """


class GarbledReply(Exception):
    """A line that does not start with a three-digit code: nothing more from this server is believed."""


def parse_reply(lines: list[bytes]) -> SMTPReply:
    code = int(lines[0][:3])
    texts = []
    enhanced = ""
    for raw in lines:
        text = raw[4:].decode("utf-8", "replace")
        m = _ENHANCED.match(text)
        if m:
            enhanced = enhanced or m.group(1)
            text = text[m.end() :]
        texts.append(text)
    return SMTPReply(code, enhanced, "\n".join(texts))


class ReplyReader:
    """
    Bytes in, whole replies out, in order. `next_reply()` gives the next
    complete reply or None (more bytes needed); it raises ReplyTooLong (its
    text says what passed which bound) or GarbledReply, after which the
    reader holds nothing.
    """

    __slots__ = ("buffer", "lines", "size")

    def __init__(self) -> None:
        self.buffer = b""
        # The lines of the reply in progress, and their bytes (for MAX_REPLY_BYTES).
        self.lines: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def held(self) -> int:
        """Bytes read and not yet handed out as a reply (what came behind a reply, e.g. after a 220 to STARTTLS)."""
        return len(self.buffer) + sum(len(line) + 2 for line in self.lines)

    def clear(self) -> None:
        self.buffer, self.lines, self.size = b"", [], 0

    def next_reply(self) -> SMTPReply | None:
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > MAX_REPLY_LINE:
                    self.clear()
                    raise ReplyTooLong(f"a reply line of more than {MAX_REPLY_LINE} bytes")
                return None
            line, self.buffer = self.buffer[:end].rstrip(b"\r"), self.buffer[end + 1 :]
            if len(line) < 3 or not line[:3].isdigit():
                raise GarbledReply(line[:40])
            self.lines.append(line)
            self.size += len(line)
            if len(self.lines) > MAX_REPLY_LINES or self.size > MAX_REPLY_BYTES:
                what = (
                    f"a reply of more than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes "
                    f"({len(self.lines)} lines, {self.size} bytes so far)"
                )
                self.clear()
                raise ReplyTooLong(what)
            if line[3:4] != b"-":
                lines, self.lines, self.size = self.lines, [], 0
                return parse_reply(lines)


class ReplyGroup:
    """
    Stands in the reply queue for each command of a pipelined group: one
    Deferred for the group, fired with every reply in order (or with the
    first failure), rather than a Deferred per command gathered again.
    """

    __slots__ = ("deferred", "replies", "left")

    def __init__(self, count: int) -> None:
        self.deferred: Deferred[list[SMTPReply]] = Deferred()
        self.replies: list[SMTPReply] = []
        self.left = count

    def callback(self, reply: SMTPReply) -> None:
        self.replies.append(reply)
        self.left -= 1
        if self.left == 0:
            self.deferred.callback(self.replies)

    def errback(self, failure: Failure) -> None:
        if not self.deferred.called:
            self.deferred.errback(failure)
