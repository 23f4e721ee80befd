"""SMTP Send Protocol Logs of the hub's deliveries (send connectors and the mailbox next hop), read from the files."""

import base64
import csv

from tests.integration.capture import CaptureServer
from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, free_port, start_sink
from tests.integration.test_outbound import _tls_context, relay_gateway, send

PASSWORD = "Sm4rt-host"


def send_logs(gw) -> str:
    folder = gw.var / "logs" / "ProtocolLog" / "Hub" / "SmtpSend"
    return "".join(p.read_text() for p in sorted(folder.glob("SEND*.LOG"))) if folder.exists() else ""


def events(text: str) -> list[list[str]]:
    return list(csv.reader(line for line in text.splitlines() if not line.startswith("#")))


def delivered(gw) -> list[list[str]] | None:
    """The send log's rows once it holds a transaction through the reply to the body (lines are flushed ten times a second)."""
    rows = events(send_logs(gw))
    replies = [r[7] for r in rows if r[6] == "<"]
    after_354 = replies[next((i for i, t in enumerate(replies) if t.startswith("354")), len(replies)):]
    return rows if any(t.startswith("250") for t in after_354) else None


def test_smart_host_delivery_with_starttls_and_auth_is_logged_with_the_password_masked(tmp_path):
    context, cert = _tls_context(tmp_path)
    hop = CaptureServer("127.0.0.1", free_port(), tls_context=context, auth=("relay-account", PASSWORD))
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "required"
tls_domain = "relay.isp.example"
tls_ca_file = "{cert}"
auth_user = "relay-account"
auth_password = "{PASSWORD}"
protocol_logging_level = "Verbose"
""")
    try:
        send(gw, ["far@outside.example"], b"Subject: over tls\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery over TLS")
        rows = gw.wait_until(lambda: delivered(gw), what="the session in the send log")
        text = send_logs(gw)
        assert {r[1] for r in rows} == {"ISP"}  # connector-id: the send connector's name
        assert len({r[2] for r in rows}) == 1  # one connection, one session
        assert [int(r[3]) for r in rows] == list(range(len(rows)))
        assert rows[0][6] == "+" and rows[0][5] == f"127.0.0.1:{hop.port}"
        said = [(r[6], r[7], r[8]) for r in rows]
        sent = [data for event, data, _ in said if event == ">"]
        assert sent[:4] == ["EHLO mail.corp.example", "STARTTLS", "EHLO mail.corp.example", "AUTH PLAIN ****"]
        assert sent[4].startswith("MAIL FROM:<app@corp.example>") and "RCPT TO:<far@outside.example>" in sent and "DATA" in sent
        infos = [(data, context) for event, data, context in said if event == "*"]
        assert ("CN=relay.isp.example", "Certificate subject") in infos
        assert any(context == "TLS negotiation succeeded" and data.startswith("TLSv1.") for data, context in infos)
        # STARTTLS comes before the TLS lines, AUTH after them.
        order = [context or data for _, data, context in said]
        assert order.index("STARTTLS") < order.index("TLS negotiation succeeded") < order.index("AUTH PLAIN ****")
        assert PASSWORD not in text
        assert base64.b64encode(f"\0relay-account\0{PASSWORD}".encode()).decode() not in text
        assert base64.b64encode(PASSWORD.encode()).decode() not in text
    finally:
        gw.stop()
        hop.stop()


def test_mailbox_next_hop_is_logged_when_verbose_and_a_connector_without_the_setting_is_not(tmp_path, sink_dir):
    sink = require_tool("smtp-sink")
    sink_port, other_port = free_port(), free_port()
    procs = [start_sink(sink, sink_port, str(sink_dir / "mbx-%M.")), start_sink(sink, other_port, str(sink_dir / "out-%M."))]
    gw = Gateway(tmp_path / "gw", extra=f"""
[mailbox]
delivery = "smtp"
next_hop = "127.0.0.1:{sink_port}"
protocol_logging_level = "Verbose"
""")
    gw.add_config(f"""
[[accepted_domains]]
domain = "partner.example"
type = "ExternalRelay"

[[send_connectors]]
name = "Partner"
address_spaces = ["partner.example"]
smart_hosts = ["127.0.0.1:{other_port}"]
tls = "none"
""")
    gw.start()
    try:
        send_plain(gw, ["alice@corp.example", "bob@partner.example"])
        gw.wait_until(lambda: gw.queue_files() == [] and len(list(sink_dir.iterdir())) == 2, what="both deliveries")
        rows = gw.wait_until(lambda: delivered(gw), what="the mailbox session in the send log")
        # The Partner connector (no protocol_logging_level: "None", Exchange's default) logs nothing.
        assert {r[1] for r in rows} == {"Mailbox Delivery"}
        assert rows[0][6] == "+" and rows[0][5] == f"127.0.0.1:{sink_port}"
        sent = [r[7] for r in rows if r[6] == ">"]
        assert sent[0] == "EHLO mail.corp.example" and sent[1].startswith("MAIL FROM:<app@devices.example>")
        assert "RCPT TO:<alice@corp.example>" in sent and not any("bob@" in line for line in sent)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        gw.stop()


def send_plain(gw, rcpts) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
        s.sendmail("app@devices.example", rcpts, b"Subject: x\r\n\r\ny\r\n")

