"""Accepted domain types end to end: where mail for each lands, with Postfix's smtp-sink as the send connectors' next hop."""

import smtplib

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, free_port, start_sink


def test_each_domain_type_lands_where_exchange_puts_it(tmp_path, sink_dir):
    """
    Authoritative mail goes to the mailbox store though a send connector
    lists the domain; InternalRelay mail (no recipient validation: nobody
    known locally) goes out through its send connector, or to the mailbox
    store when it has none; ExternalRelay mail goes out through its send
    connector, and is refused at RCPT when it has none.
    """
    sink = require_tool("smtp-sink")
    # One smtp-sink per send connector, so a dump's name says which connector took the recipient.
    sink_port, legacy_port = free_port(), free_port()
    procs = [start_sink(sink, sink_port, str(sink_dir / "partner-%M.")), start_sink(sink, legacy_port, str(sink_dir / "legacy-%M."))]
    gw = Gateway(tmp_path / "gw")
    gw.config.write_text(gw.config.read_text().replace('[[accepted_domains]]\ndomain = "corp.example"\n', f"""
[[accepted_domains]]
domain = "corp.example"
[[accepted_domains]]
domain = "shared.example"
type = "InternalRelay"
[[accepted_domains]]
domain = "plain.example"
type = "InternalRelay"
[[accepted_domains]]
domain = "partner.example"
type = "ExternalRelay"
[[accepted_domains]]
domain = "lost.example"
type = "ExternalRelay"

[[send_connectors]]
name = "Partner"
address_spaces = ["partner.example", "corp.example"]
smart_hosts = ["127.0.0.1:{sink_port}"]
tls = "none"

[[send_connectors]]
name = "Legacy"
address_spaces = ["shared.example"]
smart_hosts = ["127.0.0.1:{legacy_port}"]
tls = "none"
"""))
    gw.start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.ehlo("app")
            assert s.mail("app@devices.example")[0] == 250
            for rcpt in ("alice@corp.example", "bob@shared.example", "ivy@plain.example", "carol@partner.example"):
                assert s.rcpt(rcpt) == (250, b"2.1.5 Recipient OK"), rcpt
            assert s.rcpt("dave@lost.example") == (550, b"5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain")
            assert s.data(b"Subject: types\r\n\r\nwhere do I go\r\n")[0] == 250
        gw.wait_until(lambda: gw.queue_files() == [], timeout=30, what="the queue to empty")
        dumps = {p.name.split("-")[0]: p.read_bytes() for p in sink_dir.iterdir()}
        assert sorted(dumps) == ["legacy", "partner"]
        assert [line for line in dumps["partner"].splitlines() if line.startswith(b"X-Rcpt-Args:")] == [b"X-Rcpt-Args: <carol@partner.example>"]
        assert [line for line in dumps["legacy"].splitlines() if line.startswith(b"X-Rcpt-Args:")] == [b"X-Rcpt-Args: <bob@shared.example>"]
        assert len(gw.mailbox("alice@corp.example")) == 1 and len(gw.mailbox("ivy@plain.example")) == 1
        assert gw.mailbox("bob@shared.example") == [] and gw.mailbox("carol@partner.example") == []
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        gw.stop()
