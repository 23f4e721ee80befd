"""
Delivery under faults with real sockets (issue 17): a next hop that
accepts TCP and never answers holds 25 messages while mail for the
mailbox keeps flowing, and `exgateway queue list` shows the bad hop in
Retry with its error and next retry time.
"""

import smtplib
import socket
import threading
import time

from tests.integration.gatewayproc import Gateway, anon_relay, exgateway_cli


class Blackhole:
    """Accepts every connection on loopback and never sends a byte; counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()
        for conn in self.connections:
            conn.close()
        self.thread.join(5)


def send(gw, rcpt: str, subject: str) -> None:
    with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.connect("127.0.0.1", gw.frontend_port)
        s.sendmail("app@corp.example", [rcpt], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_a_blackhole_next_hop_does_not_stop_mailbox_delivery(tmp_path):
    blackhole = Blackhole()
    gw = Gateway(tmp_path / "gw", retry="2s", extra='greeting_timeout = "3s"')
    gw.add_config(anon_relay(gw.frontend_port, "127.0.0.2") + f"""
[[send_connectors]]
name = "ISP"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{blackhole.port}"]
""")
    gw.start()
    try:
        for i in range(25):
            send(gw, f"user{i}@outside.example", f"out {i}")
        latencies = []
        for i in range(10):
            started = time.monotonic()
            send(gw, f"box{i}@corp.example", f"in {i}")
            gw.wait_until(lambda i=i: gw.mailbox(f"box{i}@corp.example"), timeout=10, what=f"mailbox message {i}")
            latencies.append(time.monotonic() - started)
        # Every mailbox message arrived within a second of its 250, while 25 waited for the blackhole.
        assert max(latencies) < 1.0, latencies
        # The blackhole got the first window of connections, not one per message.
        assert 1 <= len(blackhole.connections) <= 5
        gw.wait_until(lambda: "next hop ISP unreachable" in gw.log(), timeout=15, what="the ISP queue in Retry")
        listing = exgateway_cli(gw.config, "queue", "list")
        assert listing.returncode == 0, listing.stderr
        (row,) = [line for line in listing.stdout.splitlines() if "EXSERVER\\ISP" in line]
        assert "Retry" in row and "25" in row and "4.4.0" in row
        assert "T" in row.split("Retry")[1]  # a NextRetryTime, ISO 8601
        # Probes, not a connection per message per retry.
        time.sleep(6)
        assert len(blackhole.connections) <= 5 + 4
        assert len(gw.queued()) == 25
    finally:
        gw.stop()
        blackhole.stop()
