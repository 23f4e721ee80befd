"""
Journaling end to end: a real gateway, a client on loopback, a journal
mailbox (Maildir) and a journal archive behind a send connector that is
down at first. The recipients' copies are the same with and without
journaling; a failing journal target waits in the queue and is delivered
when it comes back.
"""

import email
import email.policy
import smtplib

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import Gateway, anon_relay, exgateway_cli, free_port

MESSAGE = b"From: app@corp.example\r\nTo: alice@corp.example\r\nSubject: order 12\r\nMessage-ID: <o12@corp.example>\r\n\r\nthree items\r\n"


def send(gw, rcpts) -> None:
    with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.connect("127.0.0.1", gw.frontend_port)
        s.sendmail("app@corp.example", rcpts, MESSAGE)


def test_envelope_report_and_bcc_arrive_and_the_originals_are_unchanged(tmp_path):
    archive_port = free_port()
    gw = Gateway(tmp_path / "gw", retry="1s")
    gw.add_config(anon_relay(gw.frontend_port, "127.0.0.2") + f"""
[[accepted_domains]]
domain = "journal.corp.example"

[[send_connectors]]
name = "Archive"
address_spaces = ["archive.example"]
smart_hosts = ["127.0.0.1:{archive_port}"]

[[journal_rules]]
journal_recipient = "reports@journal.corp.example"

[[journal_rules]]
journal_recipient = "copies@archive.example"
report = "bcc"
recipients = ["bob@corp.example"]
""")
    gw.start()
    archive = None
    try:
        send(gw, ["alice@corp.example"])
        send(gw, ["alice@corp.example", "bob@corp.example"])
        reports = gw.wait_until(lambda: len(gw.mailbox("reports@journal.corp.example")) == 2 and gw.mailbox("reports@journal.corp.example"),
                                what="two journal reports")
        first, second = gw.wait_until(lambda: len(gw.mailbox("alice@corp.example")) == 2 and gw.mailbox("alice@corp.example"),
                                      what="alice's two copies")
        (bob,) = gw.wait_until(lambda: gw.mailbox("bob@corp.example"), what="bob's copy")
        # What the recipients got: the Received header and the message as sent, no trace of the journals.
        for copy in (first, second, bob):
            assert copy.endswith(MESSAGE) and b"journal" not in copy and b"archive" not in copy
        # Each report names the sender, every recipient and the Message-ID, and carries the original as queued.
        texts = sorted(r.split(b"Content-Type: message/rfc822\r\n\r\n")[0].split(b"\r\n\r\n", 2)[2] for r in reports)
        assert b"Sender: app@corp.example\r\nSubject: order 12\r\nMessage-Id: <o12@corp.example>\r\nTo: alice@corp.example\r\n" in texts[0]
        assert any(b"To: alice@corp.example\r\nTo: bob@corp.example\r\n" in t for t in texts)
        for report in reports:
            attached = email.message_from_bytes(report, policy=email.policy.default).get_payload()[1].get_payload()[0]
            assert attached["Message-ID"] == "<o12@corp.example>" and attached.get_content().strip() == "three items"
        # The archive is down: its Bcc copy waits in the queue (the others are delivered), then arrives.
        gw.wait_until(lambda: len(gw.queued()) == 1, what="only the Bcc copy left in the queue")
        (row,) = [line for line in exgateway_cli(gw.config, "queue", "list").stdout.splitlines() if line.startswith("EXSERVER\\Archive")]
        assert row.split()[1:4] == ["SmartHostConnectorDelivery", "Retry", "1"] and "Connection refused" in row
        archive = CaptureServer("127.0.0.1", archive_port)
        (txn,) = gw.wait_until(lambda: archive.transactions, timeout=60, what="the Bcc copy at the archive")
        assert txn.rcpts == ["copies@archive.example"] and txn.data.endswith(MESSAGE)
        gw.wait_until(lambda: gw.queue_files() == [], what="an empty queue")
    finally:
        gw.stop()
        if archive is not None:
            archive.stop()
