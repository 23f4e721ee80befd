"""
DNS MX routing end to end: a send connector without smart hosts, a real
DNS server on loopback (twisted.names, its own zone), and smtp-sink as the
exchanger. The equal-preference exchangers include a dead address, which the
delivery walks past; a null MX fails at once.
"""

import json
import smtplib
import subprocess
import sys

import pytest

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import REPO, Gateway, anon_relay, free_port, start_sink, wait_for_port


def start_dns(directory, zone: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    zone_file = directory / "zone.json"
    zone_file.write_text(json.dumps(zone))
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.dnsserver", str(port), str(zone_file)], cwd=REPO)
    # Ready when it listens on TCP (UDP is bound first).
    wait_for_port(port, process=proc)
    return proc, port


@pytest.fixture
def mx_env(tmp_path, sink_dir):
    sink_port = free_port()
    sink = start_sink(require_tool("smtp-sink"), sink_port, str(sink_dir / "%M."))
    dns_proc, dns_port = start_dns(tmp_path, {
        "outside.example": {"MX": [[10, "dead.outside.example"], [10, "live.outside.example"], [20, "backup.outside.example"]]},
        # 127.0.0.66 has nothing on the sink's port: refused, marked bad, next address.
        "dead.outside.example": {"A": ["127.0.0.66"]},
        "live.outside.example": {"A": ["127.0.0.1"]},
        "backup.outside.example": {"A": ["127.0.0.67"]},
        "nomail.example": {"MX": [[0, ""]]},
    })
    gw = Gateway(tmp_path / "gw")
    gw.add_config(anon_relay(gw.frontend_port, "127.0.0.2") + f"""
[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
port = {sink_port}
connection_timeout = "3s"
protocol_logging_level = "Verbose"

[dns]
servers = ["127.0.0.1:{dns_port}"]
timeout = "2s"
""")
    gw.start()
    gw.sink_port = sink_port
    yield gw
    gw.stop()
    for proc in (sink, dns_proc):
        proc.terminate()
        proc.wait()


def send(gw, rcpt: str, subject: str) -> None:
    with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.connect("127.0.0.1", gw.frontend_port)
        s.sendmail("app@corp.example", [rcpt], f"Subject: {subject}\r\n\r\nbody\r\n".encode())


def test_mx_delivery_walks_past_a_dead_exchanger(mx_env, sink_dir):
    for i in range(4):
        send(mx_env, f"user{i}@outside.example", f"mx {i}")
    mx_env.wait_until(lambda: len(list(sink_dir.iterdir())) == 4 and mx_env.queue_files() == [], what="4 messages at the MX")
    texts = b"".join(p.read_bytes() for p in sink_dir.iterdir())
    assert all(f"Subject: mx {i}".encode() in texts for i in range(4))
    # An MX-routed connector's sessions are in the SMTP Send Protocol Log too, under its name.
    from tests.integration.test_send_log import events, send_logs

    def logged():
        rows = events(send_logs(mx_env))
        return rows if sum(r[6] == ">" and r[7].startswith("RCPT TO:<user") for r in rows) == 4 else None

    rows = mx_env.wait_until(logged, what="the four transactions in the send log")
    assert {r[1] for r in rows} == {"Internet"}
    assert {r[5] for r in rows} == {f"127.0.0.1:{mx_env.sink_port}"}


def test_null_mx_fails_at_once_with_a_non_delivery_report(mx_env):
    """RFC 7505: no attempt, no retry; the sender (an accepted-domain mailbox here) gets an RFC 3464 report."""
    send(mx_env, "someone@nomail.example", "no mail")
    (ndr,) = mx_env.wait_until(lambda: mx_env.mailbox("app@corp.example"), timeout=15, what="the NDR")
    mx_env.wait_until(lambda: mx_env.queue_files() == [], what="an empty queue")
    assert b"Subject: Undeliverable: no mail\r\n" in ndr
    assert b"Content-Type: multipart/report; report-type=delivery-status;" in ndr
    assert b"Final-Recipient: rfc822; someone@nomail.example\r\nAction: failed\r\nStatus: 5.1.10\r\n" in ndr
    assert b"Diagnostic-Code: smtp; 556 5.1.10 the domain nomail.example accepts no mail (null MX, RFC 7505)" in ndr
    # The original header section rides along, and the NDR itself came from the null sender.
    assert b"Content-Type: text/rfc822-headers\r\n\r\nReceived: from " in ndr and b"Subject: no mail" in ndr
    assert "non-delivery notice" in mx_env.log() and "to <app@corp.example> about 1 recipients" in mx_env.log()
