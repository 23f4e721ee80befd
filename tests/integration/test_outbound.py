"""
The hub's outbound side against a scriptable next hop (tests/integration/capture.py)
and a real DNS server on loopback: smart host names with several addresses,
per-recipient failures with their NDR, byte-exact dot-stuffing.
"""

import smtplib

import pytest

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import Gateway, anon_relay, exgateway_cli, free_port
from tests.integration.test_mx import start_dns


def relay_gateway(directory, smart_host: str, settings: str = "", extra: str = "", retry: str = "1s", workers: int = 1) -> Gateway:
    """A gateway where 127.0.0.2 may relay, and a send connector "ISP" for every domain to `smart_host`."""
    gw = Gateway(directory, retry=retry, workers=workers)
    gw.add_config(anon_relay(gw.frontend_port, "127.0.0.2") + f"""
[[send_connectors]]
name = "ISP"
address_spaces = ["*"]
smart_hosts = ["{smart_host}"]
{settings}
{extra}""")
    return gw.start()


def send(gw, rcpts, data: bytes, sender="app@corp.example") -> None:
    with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.connect("127.0.0.1", gw.frontend_port)
        s.sendmail(sender, rcpts, data)


@pytest.fixture
def capture():
    server = CaptureServer("127.0.0.1", free_port(), rcpt_replies={"bad@outside.example": b"550 5.1.1 <bad@outside.example>: no such user"})
    yield server
    server.stop()


def test_a_smart_host_name_with_a_dead_address_is_walked(tmp_path, capture):
    dns_proc, dns_port = start_dns(tmp_path, {"relay.isp.example": {"A": ["127.0.0.71", "127.0.0.1"]}})
    gw = relay_gateway(tmp_path / "gw", f"relay.isp.example:{capture.port}", f"""
connection_timeout = "3s"
[dns]
servers = ["127.0.0.1:{dns_port}"]
""")
    try:
        for i in range(5):
            send(gw, [f"user{i}@outside.example"], f"Subject: n{i}\r\n\r\nhello\r\n".encode())
        gw.wait_until(lambda: len(capture.transactions) == 5 and gw.queue_files() == [], what="5 messages at the smart host")
        assert sorted(t.rcpts[0] for t in capture.transactions) == [f"user{i}@outside.example" for i in range(5)]
        assert f"127.0.0.71:{capture.port} unavailable" in gw.log()
    finally:
        gw.stop()
        dns_proc.terminate()
        dns_proc.wait()


def test_one_recipient_refused_gets_its_own_ndr_and_the_other_is_delivered(tmp_path, capture):
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{capture.port}")
    try:
        send(gw, ["good@outside.example", "bad@outside.example"], b"Subject: quarterly\r\n\r\nfigures\r\n")
        (ndr,) = gw.wait_until(lambda: gw.mailbox("app@corp.example"), what="the NDR")
        (txn,) = capture.transactions
        assert txn.rcpts == ["good@outside.example"] and b"figures" in txn.data
        assert b"Final-Recipient: rfc822; bad@outside.example\r\nAction: failed\r\nStatus: 5.1.1\r\n" in ndr
        assert b"Diagnostic-Code: smtp; 550 5.1.1 <bad@outside.example>: no such user" in ndr
        assert b"good@outside.example" not in ndr.split(b"text/rfc822-headers")[0]
        gw.wait_until(lambda: gw.queue_files() == [], what="an empty queue")
        # The message's life in the tracking log, as `exgateway track` shows it (logs are flushed every second).
        def events():
            out = exgateway_cli(gw.config, "track", "--sender", "app@corp.example").stdout
            return out if "DSN" in out else None

        table = gw.wait_until(events, what="the tracking log")
        rows = [line.split()[:3] for line in table.splitlines()[2:]]
        assert rows[0][1:] == ["RECEIVE", "SMTP"] and rows[-1][1:] == ["DSN", "DSN"]
        assert sorted(r[1] for r in rows[1:3]) == ["FAIL", "SEND"]
        ndr_events = exgateway_cli(gw.config, "track", "--recipient", "app@corp.example", "--event", "DELIVER").stdout
        assert "STOREDRIVER" in ndr_events and "Undeliverable: quarterly" in ndr_events
    finally:
        gw.stop()


def test_dots_at_every_buffer_boundary_arrive_byte_identical(tmp_path, capture):
    """A body whose first line is "." and with a "." line starting at each 4096- and 16384-byte boundary."""
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{capture.port}")
    try:
        body = bytearray(b".\r\n")
        for boundary in sorted(set(range(4096, 70000, 4096))):
            while len(body) < boundary:
                room = boundary - len(body)
                body += b"x" * 798 + b"\r\n" if room > 1000 else b"y" * (room - 2) + b"\r\n"
            body += b".dot at %d\r\n..two\r\n" % boundary
        original = bytes(body)
        send(gw, ["far@outside.example"], original)
        gw.wait_until(lambda: capture.transactions, what="the message at the next hop")
        received = capture.transactions[0].data
        trace, _sep, rest = received.partition(b"\r\n\r\n")
        assert trace.startswith(b"Received: from ") and rest == original
        assert all(line[:1] != b"." or line[:2] == b".." for line in capture.transactions[0].wire_data.split(b"\r\n")[:-1])
    finally:
        gw.stop()


def _tls_context(tmp_path, name="relay.isp.example"):
    import datetime
    import ssl

    from gateway.tls.store import make_self_signed

    pem = make_self_signed(f"CN={name}", (name,), datetime.datetime.now(datetime.UTC))
    cut = pem.index(b"-----BEGIN CERTIFICATE")
    (tmp_path / "key.pem").write_bytes(pem[:cut])
    (tmp_path / "cert.pem").write_bytes(pem[cut:])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context, tmp_path / "cert.pem"


def test_tls_required_to_a_next_hop_without_starttls_defers_and_sends_nothing(tmp_path, capture):
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{capture.port}", """
tls = "required"
""")
    try:
        send(gw, ["far@outside.example"], b"Subject: secret\r\n\r\nnot in clear\r\n")
        gw.wait_until(lambda: "deferred" in gw.log() and "does not offer STARTTLS" in gw.log(), what="the deferral")
        assert capture.transactions == [] and len(gw.queued()) == 1
    finally:
        gw.stop()


def test_tls_required_with_a_pinned_name_and_smart_host_auth(tmp_path):
    context, cert = _tls_context(tmp_path)
    hop = CaptureServer("127.0.0.1", free_port(), tls_context=context, auth=("relay-account", "Sm4rt-host"))
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "required"
tls_domain = "relay.isp.example"
tls_ca_file = "{cert}"
auth_user = "relay-account"
auth_password = "Sm4rt-host"
""")
    try:
        send(gw, ["far@outside.example"], b"Subject: over tls\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery over TLS")
        (txn,) = hop.transactions
        assert (txn.tls, txn.auth, txn.rcpts) == (True, "relay-account", ["far@outside.example"])
        assert "Sm4rt-host" not in gw.log()
    finally:
        gw.stop()
        hop.stop()


def test_a_certificate_for_another_name_is_refused_when_tls_is_required(tmp_path):
    context, cert = _tls_context(tmp_path, name="impostor.example")
    hop = CaptureServer("127.0.0.1", free_port(), tls_context=context)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "required"
tls_domain = "relay.isp.example"
tls_ca_file = "{cert}"
""")
    try:
        send(gw, ["far@outside.example"], b"Subject: x\r\n\r\nhello\r\n")
        gw.wait_until(lambda: "deferred" in gw.log() and "DNSMismatch" in gw.log(), what="the deferral")
        assert hop.transactions == [] and len(gw.queued()) == 1
    finally:
        gw.stop()
        hop.stop()


def test_queue_commands_against_the_running_hub(tmp_path):
    """Get-Queue, Get-Message, Export, Suspend, Remove-Message -WithNDR and Resume, through the admin socket."""
    import os
    import stat

    port = free_port()
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{port}", 'connection_timeout = "2s"', retry="1h")
    hop = None
    try:
        for subject in ("first", "second"):
            send(gw, ["far@outside.example"], f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        # The first is deferred and puts the ISP queue in Retry; the second waits behind it, not attempted (gateway/queue/hopqueue.py).
        gw.wait_until(lambda: "next hop ISP unreachable" in gw.log() and len(gw.queued()) == 2, what="both messages queued, ISP in Retry")
        socket_path = gw.var / "run" / "admin.sock"
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600 and stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700

        listed = exgateway_cli(gw.config, "queue", "list")
        assert listed.returncode == 0, listed.stderr
        row = listed.stdout.splitlines()[2].split()
        assert row[:5] == ["EXSERVER\\ISP", "SmartHostConnectorDelivery", "Retry", "2", "ISP"] and row[5].endswith("Z") and row[6] == "451"

        messages = exgateway_cli(gw.config, "queue", "messages", "ISP").stdout.splitlines()[2:]
        ids = [line.split()[0] for line in messages]
        assert len(ids) == 2 and "first" in messages[0] and "second" in messages[1]

        exported = exgateway_cli(gw.config, "message", "export", ids[0]).stdout
        assert exported.startswith("Received: from ") and "Subject: first" in exported

        assert exgateway_cli(gw.config, "queue", "suspend", "ISP").stdout.strip() == "ISP: Suspended"
        assert "Suspended" in exgateway_cli(gw.config, "queue", "list").stdout

        removed = exgateway_cli(gw.config, "message", "remove", ids[0], "--with-ndr")
        assert removed.returncode == 0 and removed.stdout.strip() == f"removed {ids[0]} (the sender gets a non-delivery report)"
        (ndr,) = gw.wait_until(lambda: gw.mailbox("app@corp.example"), what="the NDR for the removed message")
        assert b"550 5.3.0 Message deleted by an administrator" in ndr and b"Subject: first" in ndr

        hop = CaptureServer("127.0.0.1", port)
        assert exgateway_cli(gw.config, "queue", "resume", "ISP").stdout.strip() == "ISP: 1 message(s) retried now"
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="the resumed message delivered")
        assert [b"Subject: second" in t.data for t in hop.transactions] == [True]
        missing = exgateway_cli(gw.config, "message", "remove", ids[0])
        assert missing.returncode == 1 and missing.stderr.strip() == f"exgateway: no message '{ids[0]}' in the queue"
    finally:
        gw.stop()
        if hop is not None:
            hop.stop()


def test_a_next_hop_that_answers_451_then_recovers(tmp_path):
    hop = CaptureServer("127.0.0.1", free_port(), rcpt_replies={"far@outside.example": b"451 4.3.0 greylisted, try later"})
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        send(gw, ["far@outside.example"], b"Subject: greylisted\r\n\r\nbody\r\n", sender="app@outside.example")
        gw.wait_until(lambda: "451 4.3.0 greylisted, try later" in gw.log(), what="the 451")
        assert hop.transactions == [] and len(gw.queued()) == 1
        del hop.rcpt_replies["far@outside.example"]
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery on retry")
        assert hop.transactions[0].rcpts == ["far@outside.example"]
    finally:
        gw.stop()
        hop.stop()
