"""
The streaming skeleton shared by the filters that edit header fields as a
message passes (the header firewall, the header From fixer): split the
bytes into lines, hold only the field being read (its first line and
continuations), stop holding at the end of the header or past the
connector's header size limit (the message is refused for that at the end
anyway), and pass every other byte on at once, unchanged. A subclass says
what a field is (`_start_field`), what becomes of it (`_end_field`) and
what the end of the header writes (`_end_header`).
"""

from __future__ import annotations

from gateway.headerfields import FIELD


class FieldFilter:
    """A Transaction wrapper that streams the body to `transaction`, field by field until the header ends."""

    def __init__(self, transaction, max_header_size: int) -> None:
        self.transaction = transaction
        self.max_header_size = max_header_size
        self._partial = b""       # an incomplete line
        self._field = b""         # the header field being read (first line and continuations)
        self._seen = 0
        self._done = False

    # Transaction: everything but the body is the wrapped transaction's.
    def add_recipient(self, recipient, dsn=None):
        return self.transaction.add_recipient(recipient, dsn)

    def open_body(self):
        return self.transaction.open_body()

    def abort(self) -> None:
        self.transaction.abort()

    def write(self, data: bytes) -> None:
        if self._done:
            self.transaction.write(data)
            return
        data = self._partial + data
        self._partial = b""
        start = 0
        while not self._done:
            end = data.find(b"\n", start)
            if end < 0:
                break
            self._line(data[start : end + 1])
            start = end + 1
        rest = data[start:]
        if self._done:
            self._pass(rest)
        elif self._seen + len(rest) > self.max_header_size:
            self._stop_holding(rest)
        else:
            self._partial = rest

    def _line(self, line: bytes) -> None:
        self._seen += len(line)
        if self._seen > self.max_header_size:
            self._stop_holding(line)
            return
        if line[:1] in (b" ", b"\t") and self._field:
            self._field += line
            return
        self._end_field()
        m = FIELD.match(line)
        if m is None:
            self._end_header(line)
            return
        self._field = line
        self._start_field(m.group(1).lower())

    def _stop_holding(self, data: bytes) -> None:
        """Too big to be a header the gateway accepts: it is refused at the end (552 5.3.4); hold nothing more."""
        self._end_field()
        self._done = True
        self._pass(data)

    def _pass(self, data: bytes) -> None:
        if data:
            self.transaction.write(data)

    def _start_field(self, name: bytes) -> None:
        """`self._field` now holds the first line of the field `name` (lower case)."""
        raise NotImplementedError

    def _end_field(self) -> None:
        """The field in `self._field` (if any) is complete: write it, changed or not, or drop it; then empty it."""
        raise NotImplementedError

    def _end_header(self, line: bytes) -> None:
        """`line` is no field: the header ends there. Set `_done` and write the line."""
        raise NotImplementedError
