"""
A graceful stop of the real process (SIGTERM, as systemctl stop and kill
send; Ctrl-C is SIGINT, handled the same): a client in the middle of DATA
finishes and gets its 250, its next command gets the 421, and the process
exits within shutdown_grace, with one worker or several.
"""

import signal
import socket
import time

import pytest

from tests.integration.gatewayproc import Gateway

SHUTDOWN = b"421 4.3.2 Service not available, closing transmission channel\r\n"


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        assert self.reply().startswith(b"220 ")

    def reply(self) -> bytes:
        """One whole reply (every line of a multi-line one)."""
        lines = b""
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(4096)
                if not data:
                    return lines + self.buffer
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines += line + b"\r\n"
            if line[3:4] != b"-":
                return lines

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()


@pytest.mark.parametrize("workers, stop", [(1, signal.SIGTERM), (2, signal.SIGTERM), (2, signal.SIGINT)])
def test_a_stop_lets_a_message_in_data_finish_then_answers_421_and_exits(tmp_path, workers, stop):
    """SIGTERM (systemctl stop, kill) or SIGINT (Ctrl-C) to worker 0, with a client mid-DATA and another idle."""
    gw = Gateway(tmp_path, workers=workers)
    gw.config.write_text(gw.config.read_text().replace(f"workers = {workers}\n", f"workers = {workers}\nshutdown_grace = \"10s\"\n"))
    gw.start()
    if workers > 1:
        gw.wait_until(lambda: "admin-worker-1.sock" in gw.log(), what="worker 1 up")
    try:
        client = RawClient(gw.frontend_port)
        assert client.command("EHLO client.example").startswith(b"250")
        assert client.command("MAIL FROM:<app@devices.example>").startswith(b"250")
        assert client.command("RCPT TO:<alice@corp.example>").startswith(b"250")
        assert client.command("DATA").startswith(b"354")
        client.sock.sendall(b"Subject: mid-transfer\r\n\r\nfirst half\r\n")
        idle = RawClient(gw.frontend_port)

        gw.process.send_signal(stop)
        stopped_at = time.monotonic()
        # The idle session is told at once; the process waits for the message in flight.
        assert idle.reply() == SHUTDOWN
        time.sleep(1.0)
        assert gw.process.poll() is None
        client.sock.sendall(b"second half\r\n.\r\n")
        assert client.reply().startswith(b"250 2.6.0 ")
        assert client.command("MAIL FROM:<app@devices.example>") == SHUTDOWN
        # No new connection is taken.
        with pytest.raises(OSError):  # noqa: PT012 (connect, or the first command on a connection already closed)
            late = RawClient(gw.frontend_port)
            late.command("NOOP")
            raise ConnectionRefusedError("connected")
        # twistd ends by re-raising the signal it stopped for (what systemd expects of a clean stop).
        assert gw.process.wait(timeout=15) in (0, -stop)
        assert time.monotonic() - stopped_at < 10
    finally:
        gw.stop()
    # The message that got its 250 is on disk: delivered, or in the queue for the next start.
    stored = gw.mailbox("alice@corp.example") or [(gw.var / "queue").rglob(f"{i}.eml").__next__().read_bytes() for i in gw.queued()]
    assert len(stored) == 1 and b"first half\r\nsecond half\r\n" in stored[0]
    assert "Main loop terminated" in gw.log()
