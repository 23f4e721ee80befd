"""
Exchange's SMTP protocol logs: CSV, one line per event, hourly files.

The format of Exchange's SMTP Receive (and Send) Protocol Log, so the
PowerShell and Log Parser scripts admins already have keep working:

    #Software: exgateway
    #Version: 0.1.0
    #Log-type: SMTP Receive Protocol Log
    #Date: 2026-11-27T01:00:00.000Z
    #Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context

Events: `+` connect, `-` disconnect, `>` sent, `<` received, `*` information.
Files are `RECVyyyymmddhh-n.LOG` (`SEND...` for send logs), a new one each
hour or when one reaches the size limit; files older than the age limit are
deleted when a new file starts. Lines are buffered and flushed about once a
second (and on stop): the log must not cost a write per SMTP line.
"""

from __future__ import annotations

import time
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

FIELDS = "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"
VERSION = "0.1.0"
log = Logger(namespace="exgateway.logs")

KINDS = {"RECV": "SMTP Receive Protocol Log", "SEND": "SMTP Send Protocol Log"}


def csv_field(value: str) -> str:
    """Quote a field the way Exchange's logs do: only when it must be."""
    if value and (any(c in value for c in ',"\r\n') or value[0] == " " or value[-1] == " "):
        return '"' + value.replace('"', '""') + '"'
    return value


def endpoint(host: str, port: int) -> str:
    """`ip:port` as the logs write it, with brackets around IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def iso_time(seconds: float) -> str:
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{int(seconds % 1 * 1000):03d}Z"


class ProtocolLog:
    def __init__(self, directory: Path, kind: str, clock, max_file_size: int = 10 * 1024 * 1024, max_age: float = 30 * 86400) -> None:
        self.directory = Path(directory)
        self.kind = kind
        self.clock = clock
        self.max_file_size = max_file_size
        self.max_age = max_age
        self._file = None
        self._hour = None
        self._size = 0
        self._buffer: list[str] = []

    def write(self, connector_id: str, session_id: str, sequence: int, local: str, remote: str, event: str, data: str = "", context: str = "") -> None:
        now = self.clock.seconds()
        line = (
            f"{iso_time(now)},{csv_field(connector_id)},{session_id},{sequence},{local},{remote},{event},"
            f"{csv_field(data)},{csv_field(context)}\r\n"
        )
        hour = int(now // 3600)
        if self._file is None or hour != self._hour or self._size + len(line) > self.max_file_size:
            self._rotate(now, hour)
        self._buffer.append(line)
        self._size += len(line)

    def flush(self) -> None:
        if self._buffer and self._file is not None:
            self._file.write("".join(self._buffer))
            self._buffer = []
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self, now: float, hour: int) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d%H", time.gmtime(now))
        n = 1
        while (self.directory / f"{self.kind}{stamp}-{n}.LOG").exists():
            n += 1
        path = self.directory / f"{self.kind}{stamp}-{n}.LOG"
        self._file = open(path, "a", encoding="utf-8", newline="")
        self._hour = hour
        header = (
            f"#Software: exgateway\r\n#Version: {VERSION}\r\n#Log-type: {KINDS[self.kind]}\r\n"
            f"#Date: {iso_time(now)}\r\n#Fields: {FIELDS}\r\n"
        )
        self._file.write(header)
        self._size = len(header)
        self._expire(now)

    def _expire(self, now: float) -> None:
        for old in self.directory.glob(f"{self.kind}*.LOG"):
            try:
                if now - old.stat().st_mtime > self.max_age:
                    old.unlink()
            except OSError:
                pass


class ProtocolLogService(Service):
    """Flushes the logs about once a second, and on stop."""

    def __init__(self, logs: list[ProtocolLog], clock) -> None:
        self.logs = logs
        self._loop = LoopingCall(self._flush)
        self._loop.clock = clock

    def _flush(self) -> None:
        for plog in self.logs:
            try:
                plog.flush()
            except OSError as e:
                log.error("protocol log {directory}: {error}", directory=str(plog.directory), error=str(e))

    def startService(self) -> None:
        super().startService()
        self._loop.start(1.0, now=False)

    def stopService(self):
        if self._loop.running:
            self._loop.stop()
        for plog in self.logs:
            plog.close()
        return super().stopService()


class SessionLog:
    """One session's view of a protocol log: constant ids, sequence numbers from 0."""

    __slots__ = ("plog", "connector_id", "session_id", "local", "remote", "sequence")

    def __init__(self, plog: ProtocolLog, connector_id: str, session_id: str, local: str, remote: str) -> None:
        self.plog = plog
        self.connector_id = connector_id
        self.session_id = session_id
        self.local = local
        self.remote = remote
        self.sequence = 0

    def event(self, event: str, data: str = "", context: str = "") -> None:
        self.plog.write(self.connector_id, self.session_id, self.sequence, self.local, self.remote, event, data, context)
        self.sequence += 1
