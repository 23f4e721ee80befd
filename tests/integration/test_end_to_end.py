"""The real service on loopback, driven by swaks, smtplib and a raw socket."""

import re
import smtplib
import socket
import subprocess

from tests.integration.conftest import require_tool

DATE = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000"


def trace_and_body(stored: bytes) -> tuple[bytes, bytes]:
    """Split a delivered file into our Received header and what the client sent."""
    m = re.match(rb"Received: from .*?\r\n\t.*?\r\n\t.*?\r\n\t.*?\r\n", stored, re.DOTALL)
    assert m, stored[:300]
    return m.group(0), stored[m.end() :]


def test_swaks_dialogue_and_byte_exact_maildir(gateway):
    """swaks gets Exchange's replies; alice's Maildir gets exactly the bytes sent plus a Received header."""
    swaks = require_tool("swaks")
    data = (
        "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <swaks-1@devices.example>\r\n"
        "From: scanner@devices.example\r\nTo: alice@corp.example\r\nSubject: scan\r\n\r\n"
        "Page 1\r\n.leading dot\r\n  indented"
    )
    out = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{gateway.frontend_port}", "--to", "alice@corp.example", "--from", "scanner@devices.example",
         "--helo", "scanner7.devices.example", "--data", data],
        capture_output=True, text=True, timeout=30,
    ).stdout
    server_lines = [line[4:] for line in out.splitlines() if line.startswith(("<-  ", "<** "))]
    assert re.fullmatch(rf"220 mail\.corp\.example exgateway ESMTP MAIL Service ready at {DATE}", server_lines[0])
    assert "250 2.1.0 Sender OK" in server_lines
    assert "250 2.1.5 Recipient OK" in server_lines
    assert "354 Start mail input; end with <CRLF>.<CRLF>" in server_lines
    queued = [line for line in server_lines if line.startswith("250 2.6.0")]
    assert len(queued) == 1 and re.fullmatch(
        r"250 2\.6\.0 <swaks-1@devices\.example> \[InternalId=\d+, Hostname=mail\.corp\.example\] Queued mail for delivery", queued[0]
    )
    assert server_lines[-1] == "221 2.0.0 Service closing transmission channel"

    (stored,) = gateway.wait_until(lambda: gateway.mailbox("alice@corp.example"), what="alice's mail")
    received, body = trace_and_body(stored)
    # swaks ends the data with CRLF before the dot; the rest is byte for byte what it was given.
    assert body == data.encode() + b"\r\n"
    assert re.match(
        rb'Received: from scanner7\.devices\.example \(\[127\.0\.0\.1\]\)\r\n\tby mail\.corp\.example \(exgateway\) with ESMTP\r\n'
        rb'\t\(connector "EXSERVER\\\\Default Frontend"\) id \d+;\r\n\t' + DATE.encode() + rb"\r\n$",
        received,
    )


def test_relay_refused_and_internal_recipient_still_accepted(gateway):
    """550 5.7.54 for the outside recipient; the inside one in the same transaction gets the mail."""
    with smtplib.SMTP("127.0.0.1", gateway.frontend_port, timeout=10) as s:
        s.ehlo("app01")
        s.mail("app@devices.example")
        assert s.rcpt("someone@outside.example") == (550, b"5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
        assert s.rcpt("bob@corp.example") == (250, b"2.1.5 Recipient OK")
        code, reply = s.data(b"Subject: relay test\r\n\r\nhello bob\r\n")
        assert code == 250 and reply.endswith(b"Queued mail for delivery")
    (stored,) = gateway.wait_until(lambda: gateway.mailbox("bob@corp.example"), what="bob's mail")
    _, body = trace_and_body(stored)
    # No Message-ID or Date from the client: the hub added them (and only them).
    assert re.fullmatch(rb"Message-ID: <\d+@mail\.corp\.example>\r\nDate: .*?\r\nSubject: relay test\r\n\r\nhello bob\r\n", body)


def test_pipelined_session_gets_replies_in_order(gateway):
    """One write with the whole transaction; the replies come back in command order."""
    sock = socket.create_connection(("127.0.0.1", gateway.frontend_port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"EHLO pipe\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    sock.sendall(
        b"MAIL FROM:<p@devices.example>\r\nRCPT TO:<carol@corp.example>\r\nRCPT TO:<x@outside.example>\r\n"
        b"RCPT TO:<dave@corp.example>\r\nDATA\r\n"
    )
    replies = [f.readline() for _ in range(5)]
    assert replies[:5] == [
        b"250 2.1.0 Sender OK\r\n",
        b"250 2.1.5 Recipient OK\r\n",
        b"550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain\r\n",
        b"250 2.1.5 Recipient OK\r\n",
        b"354 Start mail input; end with <CRLF>.<CRLF>\r\n",
    ]
    sock.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.6.0 <")
    assert f.readline() == b"250 2.0.0 OK\r\n"
    assert f.readline() == b"221 2.0.0 Service closing transmission channel\r\n"
    sock.close()
    for who in ("carol@corp.example", "dave@corp.example"):
        (stored,) = gateway.wait_until(lambda who=who: gateway.mailbox(who), what=who)
        assert stored.endswith(b"Subject: piped\r\n\r\nbody\r\n")


def test_smuggling_attempt_stays_one_message(gateway):
    """<LF>.<LF> followed by a smuggled transaction: it ends nothing; one message, to the real recipient, with the smuggled lines as its text."""
    sock = socket.create_connection(("127.0.0.1", gateway.frontend_port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"HELO x\r\nMAIL FROM:<a@devices.example>\r\nRCPT TO:<erin@corp.example>\r\nDATA\r\n")
    for _ in range(4):
        f.readline()
    sock.sendall(b"Subject: a\r\n\r\nx\n.\nMAIL FROM:<ceo@corp.example>\r\nRCPT TO:<frank@corp.example>\r\nDATA\r\nfake\r\n.\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.6.0 <")
    assert f.readline() == b"221 2.0.0 Service closing transmission channel\r\n"
    sock.close()
    (stored,) = gateway.wait_until(lambda: gateway.mailbox("erin@corp.example"), what="erin's message")
    assert stored.endswith(b"Subject: a\r\n\r\nx\r\n\r\nMAIL FROM:<ceo@corp.example>\r\nRCPT TO:<frank@corp.example>\r\nDATA\r\nfake\r\n")
    assert gateway.mailbox("frank@corp.example") == []


def test_connection_log_names_connector_and_client(gateway):
    """Which connector took a connection: a connector without a protocol log says it in the process log."""
    with smtplib.SMTP("127.0.0.1", gateway.hub_port, timeout=10) as s:
        s.noop()
    log = gateway.wait_until(lambda: "EXSERVER\\Default (127.0.0.1:" in gateway.log() and gateway.log(), what="connect log")
    assert re.search(rf"connect [0-9A-F]{{16}} 127\.0\.0\.1:\d+ -> EXSERVER\\Default \(127\.0\.0\.1:{gateway.hub_port}\)", log)
    # A protocol-logged connector says it there (its "+" row), not once more per connection here.
    assert "-> EXSERVER\\Default Frontend" not in log
    # Routine per-message events go to the message tracking log, not the process log.
    assert "queued " not in log and "delivered " not in log
    from tests.integration.gatewayproc import exgateway_cli

    def tracked():
        out = exgateway_cli(gateway.config, "track", "--message-id", "<swaks-1@devices.example>").stdout
        return out if "DELIVER" in out else None

    rows = [line.split()[1:3] for line in gateway.wait_until(tracked, what="tracking events").splitlines()[2:]]
    assert rows == [["RECEIVE", "SMTP"], ["DELIVER", "STOREDRIVER"]]


def test_protocol_log_of_a_session_parses_as_exchange_csv(gateway):
    """The frontend's receive log has Exchange's header and one row per event of the session."""
    import csv
    import time

    with smtplib.SMTP("127.0.0.1", gateway.frontend_port, timeout=10) as s:
        s.ehlo("logcheck")
        s.mail("log@devices.example")
        s.rcpt("alice@corp.example")
        s.rset()
    logs = gateway.var / "logs" / "ProtocolLog" / "FrontEnd" / "SmtpReceive"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        files = sorted(logs.glob("RECV*.LOG"))
        text = "".join(f.read_text() for f in files)
        if "ehlo logcheck" in text and ",-," in text.split("ehlo logcheck", 1)[1]:
            break
        time.sleep(0.1)
    assert re.fullmatch(r"RECV\d{10}-\d+\.LOG", files[0].name)
    lines = files[0].read_text().splitlines()
    assert lines[2] == "#Log-type: SMTP Receive Protocol Log"
    assert lines[4] == "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"
    rows = list(csv.reader(line for line in text.splitlines() if not line.startswith("#")))
    # smtplib writes its commands in lower case; the log keeps the line as sent.
    session = next(r[2] for r in rows if r[7] == "ehlo logcheck")
    mine = [r for r in rows if r[2] == session]
    assert [r[6] for r in mine][:3] == ["+", "*", ">"]
    # Which connector took the connection, and from where.
    assert mine[0][1] == "EXSERVER\\Default Frontend" and re.fullmatch(r"127\.0\.0\.1:\d+", mine[0][5])
    assert [int(r[3]) for r in mine] == list(range(len(mine)))
    assert ["<", "rcpt TO:<alice@corp.example>"] in [r[6:8] for r in mine]
    assert [">", "250 2.1.5 Recipient OK"] in [r[6:8] for r in mine]
    assert mine[-1][6] == "-"
