"""Mailbox delivery to an SMTP next hop (Postfix's smtp-sink): deferred while it is down, then delivered."""

import re
import smtplib

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, anon_relay, free_port, start_sink


def test_next_hop_down_then_up(tmp_path, sink_dir):
    """While the next hop refuses connections the message stays queued; once it listens, it arrives intact."""
    sink = require_tool("smtp-sink")
    sink_port = free_port()
    gw = Gateway(tmp_path / "gw", extra=f'[mailbox]\ndelivery = "smtp"\nnext_hop = "127.0.0.1:{sink_port}"\n').start()
    proc = None
    try:
        body = b"Message-ID: <hop@devices.example>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nSubject: hop\r\n\r\n.starts with a dot\r\n..two dots\r\nend\r\n"
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.sendmail("app@devices.example", ["alice@corp.example", "bob@corp.example"], body)
        gw.wait_until(lambda: "deferred" in gw.log(), what="a deferred attempt")
        assert re.search(r"deferred \d+ to <alice@corp\.example>: 451 4\.4\.0 next hop 127\.0\.0\.1:\d+ unreachable", gw.log())
        assert len(gw.queued()) == 1

        proc = start_sink(sink, sink_port, str(sink_dir / "%M."))
        (dump,) = gw.wait_until(lambda: list(sink_dir.iterdir()), timeout=30, what="the sink to receive the message")
        gw.wait_until(lambda: gw.queue_files() == [], what="the queue to empty")
        text = dump.read_bytes()
        assert b"X-Mail-Args: <app@devices.example>" in text
        assert b"X-Rcpt-Args: <alice@corp.example>" in text and b"X-Rcpt-Args: <bob@corp.example>" in text
        # The sink stores LF line ends and closes each dump with an empty line;
        # the message arrives unstuffed and whole after our Received header.
        assert text.endswith(body.replace(b"\r\n", b"\n") + b"\n")
        assert re.search(rb"Received: from \S+ \(\[127\.0\.0\.1\]\)\n\tby mail\.corp\.example \(exgateway\)", text)
        assert "delivered " not in gw.log()  # routine: in the tracking log (SEND ... 250), not the process log
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        gw.stop()


def test_next_hop_hard_refusal_fails_the_recipient_and_frees_the_queue(tmp_path, sink_dir):
    """A 5xx to RCPT at the next hop is final for that recipient: logged, not retried, kept in queue/failed/."""
    sink = require_tool("smtp-sink")
    sink_port = free_port()
    proc = start_sink(sink, sink_port, str(sink_dir / "%M."), "-f", "RCPT")
    gw = Gateway(tmp_path / "gw", extra=f'[mailbox]\ndelivery = "smtp"\nnext_hop = "127.0.0.1:{sink_port}"\n').start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.sendmail("app@devices.example", ["gone@corp.example"], b"Subject: x\r\n\r\ny\r\n")
        gw.wait_until(lambda: "failed for good" in gw.log(), what="a failed recipient")
        assert re.search(r"failed \d+ to <gone@corp\.example>: 5\d\d 5\.\d\.\d", gw.log())
        assert gw.queue_files() == []
        kept = sorted(p.name for p in (gw.var / "queue" / "failed").iterdir())
        assert len(kept) == 2 and kept[0].endswith(".eml") and kept[1].endswith(".json")
    finally:
        proc.terminate()
        proc.wait()
        gw.stop()


def test_seed_anonymous_relay_reaches_the_smart_host(tmp_path, sink_dir):
    """The seed's scenario end to end: a device on the relay connector sends outside; the smart host gets it."""
    sink = require_tool("smtp-sink")
    sink_port = free_port()
    proc = start_sink(sink, sink_port, str(sink_dir / "%M."))
    gw = Gateway(tmp_path / "gw")
    extra = anon_relay(gw.frontend_port, "127.0.0.2") + f"""
[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{sink_port}"]
"""
    gw.add_config(extra)
    gw.start()
    try:
        s = smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0))
        s.connect("127.0.0.1", gw.frontend_port)
        s.sendmail("scanner@devices.example", ["someone@outside.example"], b"Subject: scan\r\n\r\npage 1\r\n")
        s.quit()
        # The queue empties once the smart host has said 250, i.e. after its dump is complete.
        gw.wait_until(lambda: gw.queue_files() == [] and list(sink_dir.iterdir()), timeout=30, what="the smart host to get the message")
        (dump,) = list(sink_dir.iterdir())
        text = dump.read_bytes()
        assert b"X-Rcpt-Args: <someone@outside.example>" in text and text.endswith(b"Subject: scan\n\npage 1\n\n")
        # Every other client on the port still may not relay.
        other = smtplib.SMTP(timeout=10, source_address=("127.0.0.3", 0))
        other.connect("127.0.0.1", gw.frontend_port)
        other.ehlo("laptop")
        other.mail("x@devices.example")
        assert other.rcpt("someone@outside.example") == (550, b"5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
        other.quit()
    finally:
        proc.terminate()
        proc.wait()
        gw.stop()
