"""
Exchange-style CSV log files: a header, hourly files, a size and an age limit.

Shared by the protocol logs and the message tracking log. Files are
`<PREFIX>yyyymmddhh-n.LOG`, a new one each hour or when one reaches the size
limit; when a new file starts, files older than the age limit are deleted,
then the oldest files until the directory's logs fit its size limit
(Exchange's MaxDirectorySize: a flood of sessions must not fill the disk
before the age limit is reached).
Each process writes files of its own (a node's workers share the directory).
Lines are buffered and written ten times a second (ProtocolLogService) and
on stop: a log must not cost a write per event. What is buffered is the
event's values, not its line: the CSV is formatted when the buffer is
written, in one pass, instead of while a client waits for its reply (a
session logs a dozen lines or more; side by side, see bench/RESULTS.md).
Rotation is decided there too, line by line, from each event's own time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from twisted.logger import Logger

from gateway.files import LOG_DIRECTORY, LOG_FILE, create_new, make_directory

VERSION = "0.1.0"

log = Logger(namespace="exgateway.logs")


# A spreadsheet opening a log reads a cell that starts with one of these as a
# formula (CSV injection: `=HYPERLINK(...)` in a HELO name or a Subject).
_FORMULA_START = frozenset("=+-@\t")
# Any field that needs the neutralising quote, or that already starts with
# quotes before such a character (so reading back is unambiguous).
_RISKY = re.compile(r"(?:^|,)'*[=+\-@\t]")


def neutralise(value: str) -> str:
    """
    A field a spreadsheet would run as a formula gets a leading `'`, which
    spreadsheets take as "this cell is text" and do not show. A field that
    already starts with quotes before such a character gets one more, so
    `restore` gives back exactly what was logged.
    """
    if value and value.lstrip("'")[:1] in _FORMULA_START:
        return "'" + value
    return value


def restore(value: str) -> str:
    """The value that `neutralise` was given (readers of the logs, e.g. `exgateway track`)."""
    if value[:1] == "'" and value.lstrip("'")[:1] in _FORMULA_START:
        return value[1:]
    return value


def csv_field(value: str) -> str:
    """Quote a field the way Exchange's logs do: only when it must be; a would-be formula neutralised."""
    if not value:
        return value
    if value[0] in _FORMULA_START or value[0] == "'":
        value = neutralise(value)
    # Plain membership tests: this runs for every field of every protocol-log line.
    if "," in value or '"' in value or "\r" in value or "\n" in value or value[0] == " " or value[-1] == " ":
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_line(values: tuple[str, ...] | list[str]) -> str:
    """
    The fields joined by commas, each quoted as csv_field would. One scan
    of the joined line answers for all of them when none needs quoting
    (nearly always: no field then holds a comma, a quote, a line break, or
    a space next to a separator or at either end, nor starts like a
    formula), instead of one call per field.
    """
    line = ",".join(values)
    if (
        line.count(",") == len(values) - 1
        and '"' not in line and "\r" not in line and "\n" not in line
        and ", " not in line and " ," not in line and line[:1] != " " and line[-1:] != " "
        and not _RISKY.search(line)
    ):
        return line
    return ",".join([csv_field(v) for v in values])


def endpoint(host: str, port: int) -> str:
    """`ip:port` as the logs write it, with brackets around IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_second: list = [None, ""]
_milli: list = [None, ""]


def iso_time(seconds: float) -> str:
    """
    `2026-11-27T03:00:00.123Z`. A session's lines come a few to the
    millisecond and many to the second: the whole string is kept for the
    last millisecond, the part up to the second for the last second.
    """
    milli = int(seconds * 1000)
    if _milli[0] == milli:
        return _milli[1]
    whole, fraction = divmod(milli, 1000)
    if _second[0] != whole:
        t = time.gmtime(whole)
        _second[0], _second[1] = whole, (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
    _milli[0], _milli[1] = milli, f"{_second[1]}.{fraction:03d}Z"
    return _milli[1]


class RollingLog:
    def __init__(
        self, directory: Path, prefix: str, log_type: str, fields: str, clock, max_file_size: int, max_age: float,
        max_directory_size: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.log_type = log_type
        self.fields = fields
        self.clock = clock
        self.max_file_size = max_file_size
        self.max_age = max_age
        self.max_directory_size = max_directory_size
        self._file: TextIO | None = None
        self._path: Path | None = None
        self._hour: int | None = None
        self._size = 0
        # (time, format, values): the line is format(time, *values), made at flush.
        self._buffer: list[tuple] = []

    def record(self, now: float, format: Callable[..., str], *values) -> None:
        """An event whose line is `format(now, *values)`, formatted when written. The values must not change meanwhile."""
        self._buffer.append((now, format, values))

    def flush(self) -> None:
        if not self._buffer:
            return
        buffered, self._buffer = self._buffer, []
        lines: list[str] = []
        for now, format, values in buffered:
            try:
                line = format(now, *values)
            except Exception:
                # A bad event costs its own line, not the others in the buffer nor the flushes after it.
                log.failure("{prefix} log: an event could not be formatted", prefix=self.prefix)
                continue
            hour = int(now // 3600)
            if self._file is None or hour != self._hour or self._size + len(line) > self.max_file_size:
                self._write(lines)
                lines = []
                self._rotate(now, hour)
            lines.append(line)
            self._size += len(line)
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if lines:
            # A line always rotates first when no file is open.
            assert self._file is not None
            self._file.write("".join(lines))
            self._file.flush()

    def close(self) -> None:
        self.flush()
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self, now: float, hour: int) -> None:
        self._close_file()
        make_directory(self.directory, LOG_DIRECTORY)
        stamp = time.strftime("%Y%m%d%H", time.gmtime(now))
        # Created exclusively: the workers of one node share the log directory,
        # and two processes appending to one file could interleave their lines.
        n = 1
        while True:
            try:
                path = self.directory / f"{self.prefix}{stamp}-{n}.LOG"
                fd = create_new(path, LOG_FILE)
                file = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115 (held open until the log rolls)
                self._file = file
                self._path = path
                break
            except FileExistsError:
                n += 1
        self._hour = hour
        header = (
            f"#Software: exgateway\r\n#Version: {VERSION}\r\n#Log-type: {self.log_type}\r\n"
            f"#Date: {iso_time(now)}\r\n#Fields: {self.fields}\r\n"
        )
        file.write(header)
        self._size = len(header)
        self._expire(now)

    def _expire(self, now: float) -> None:
        kept = []
        for old in self.directory.glob("*.LOG"):
            try:
                st = old.stat()
                if old.name.startswith(self.prefix) and now - st.st_mtime > self.max_age:
                    old.unlink()
                else:
                    kept.append((st.st_mtime, old.name, st.st_size, old))
            except OSError:
                pass
        if self.max_directory_size is None:
            return
        total = sum(size for _, _, size, _ in kept)
        # Oldest first: by time, then by name (yyyymmddhh-n sorts in order within a second).
        for _, name, size, old in sorted(kept):
            if total <= self.max_directory_size:
                break
            if old == self._path:
                continue
            try:
                old.unlink()
            except OSError:
                continue
            total -= size
            log.info("{prefix} log: {file} deleted, the directory was over {limit} bytes", prefix=self.prefix, file=name,
                     limit=self.max_directory_size)
