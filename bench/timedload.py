"""
A load whose own transactions are timed (ab.py --timed).

smtp-source gives a rate but no time per message, and relay.py's probe
times small messages sent beside the load, not the load's: a change that
makes a 5 MB message's final reply come sooner (the frontend streaming the
body on to the hub, issue 22 item 4) does not show in either. Here
`sessions` threads each send their share of `messages`, one connection per
message (as smtp-source -s N -m M does), and time each whole transaction
from connect to the final reply to the body, and separately the wait from
the last body byte handed to the kernel to that reply.

The body is built once and sent with `sendall` (DATA, already dot-safe: no
line starts with a dot), so the client's own CPU is mostly the kernel's
copy, not Python.
"""

from __future__ import annotations

import socket
import threading
import time


def message(size: int) -> bytes:
    """About `size` octets of header and 78-character lines, none starting with a dot."""
    head = b"From: <app@devices.example>\r\nTo: <bench@corp.example>\r\nSubject: timed load\r\n\r\n"
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


class _Replies:
    """Reads SMTP replies off a socket, line by line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk


def _expect(replies: _Replies, code: bytes) -> None:
    """Read one whole reply (to its line without a hyphen); it must have `code`."""
    line = replies.line()
    while line[3:4] == b"-":
        line = replies.line()
    if not line.startswith(code):
        raise RuntimeError(f"expected {code.decode()}, got {line!r}")


def one(port: int, body: bytes) -> tuple[float, float]:
    """One transaction on its own connection: (connect to final reply, last byte sent to final reply), seconds."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        replies = _Replies(sock)
        _expect(replies, b"220")
        sock.sendall(b"EHLO timed.bench.example\r\n")
        _expect(replies, b"250")
        sock.sendall(b"MAIL FROM:<app@devices.example>\r\n")
        _expect(replies, b"250")
        sock.sendall(b"RCPT TO:<bench@corp.example>\r\n")
        _expect(replies, b"250")
        sock.sendall(b"DATA\r\n")
        _expect(replies, b"354")
        sock.sendall(body)
        t1 = time.perf_counter()
        _expect(replies, b"250")
        t2 = time.perf_counter()
        sock.sendall(b"QUIT\r\n")
    return t2 - t0, t2 - t1


def run(port: int, sessions: int, messages: int, size: int) -> tuple[list[float], list[float]]:
    """`messages` timed transactions over `sessions` threads: (whole transaction times, end-of-data waits)."""
    body = message(size) + b".\r\n"
    whole: list[float] = []
    tail: list[float] = []
    lock = threading.Lock()
    left = [messages]
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if left[0] == 0 or errors:
                    return
                left[0] -= 1
            try:
                w, t = one(port, body)
            except BaseException as e:
                errors.append(e)
                return
            with lock:
                whole.append(w)
                tail.append(t)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return whole, tail


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]
