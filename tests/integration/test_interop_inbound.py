"""
Real clients that send what RFC 5321 frowns on (issue 18 items 1 and 2):
curl uploading a Unix text file, smtplib with LF-only bytes, a 1,200-octet
cron line, a 50-recipient unfolded To:. Each is accepted and reaches the
mailbox with CRLF line ends and every long line intact, through the
frontend, the hub and the queue.
"""

import re
import smtplib
import subprocess

from tests.integration.conftest import require_tool
from tests.integration.test_end_to_end import trace_and_body


def client_bytes(stored: bytes) -> bytes:
    """What the client sent: the delivered file without our Received header and the Message-ID/Date the hub adds when missing."""
    body = trace_and_body(stored)[1]
    m = re.match(rb"Message-ID: <[^>]+>\r\nDate: [^\r\n]+\r\n", body)
    assert m, body[:200]
    return body[m.end() :]


def test_curl_upload_of_a_unix_text_file_arrives_with_crlf_lines(gateway, tmp_path):
    letter = tmp_path / "letter.txt"
    letter.write_bytes(b"From: cron@devices.example\nTo: alice@corp.example\nSubject: nightly\n\nall good\n  indented\n\tand tabbed\nbye\n")
    run = subprocess.run(
        [require_tool("curl"), "-sS", f"smtp://127.0.0.1:{gateway.frontend_port}", "--mail-from", "cron@devices.example",
         "--mail-rcpt", "carol.curl@corp.example", "--upload-file", str(letter)],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 0, run.stderr
    (stored,) = gateway.wait_until(lambda: gateway.mailbox("carol.curl@corp.example"), what="curl's message")
    # curl ends a file that ends in LF with <CRLF>.<CRLF>: its last LF and that CRLF make a blank line, as with Postfix.
    assert client_bytes(stored) == (
        b"From: cron@devices.example\r\nTo: alice@corp.example\r\nSubject: nightly\r\n\r\nall good\r\n  indented\r\n\tand tabbed\r\nbye\r\n\r\n"
    )


def test_smtplib_bytes_with_lf_and_a_1200_octet_line_arrive_intact(gateway):
    long_line = b"cron: " + b"x" * 1194
    to = ", ".join(f"user{i:02}@corp.example" for i in range(50)).encode()
    msg = b"From: app@devices.example\nTo: " + to + b"\nSubject: report\n\n" + long_line + b"\n..starts with a dot\nend\n"
    with smtplib.SMTP("127.0.0.1", gateway.frontend_port, timeout=10) as s:
        assert s.sendmail("app@devices.example", ["dave.lf@corp.example"], msg) == {}
    (stored,) = gateway.wait_until(lambda: gateway.mailbox("dave.lf@corp.example"), what="smtplib's message")
    body = client_bytes(stored)
    # smtplib stuffed the dot of the LF-ended line and it is unstuffed like any line; every line end is CRLF;
    # smtplib adds CRLF after the last LF, as curl does: a blank last line.
    assert body == msg.replace(b"\n", b"\r\n") + b"\r\n"
    assert len(long_line) == 1200 and b"\r\nTo: " + to + b"\r\n" in body


def test_swaks_1200_octet_line_is_accepted_not_500(gateway):
    """msmtp's failure case (exit 69 on '500 5.5.2 Line too long' after the dot), replayed with swaks's exact CRLF framing."""
    line = "y" * 1200
    run = subprocess.run(
        [require_tool("swaks"), "--server", f"127.0.0.1:{gateway.frontend_port}", "--from", "cron@devices.example",
         "--to", "erin.long@corp.example", "--data", f"Subject: cron\r\n\r\n{line}"],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 0 and "<-  250 2.6.0" in run.stdout, run.stdout
    (stored,) = gateway.wait_until(lambda: gateway.mailbox("erin.long@corp.example"), what="swaks's message")
    assert client_bytes(stored) == f"Subject: cron\r\n\r\n{line}\r\n".encode()


def test_mail_with_auth_parameter_is_delivered(gateway):
    """Postfix's smtp_send_dummy_mail_auth sends AUTH=<>, Outlook AUTH=<user>: both got 555 5.5.4 and bounced (issue 18 item 6)."""
    with smtplib.SMTP("127.0.0.1", gateway.frontend_port, timeout=10) as s:
        s.ehlo("postfix.devices.example")
        assert s.mail("app@devices.example", ["AUTH=<>", "BODY=8BITMIME"]) == (250, b"2.1.0 Sender OK")
        assert s.rcpt("frank.auth@corp.example")[0] == 250
        assert s.data(b"Subject: dummy auth\r\n\r\nhi\r\n")[0] == 250
        s.rset()
        assert s.mail("app@devices.example", ["AUTH=someone@corp.example"]) == (250, b"2.1.0 Sender OK")
        s.rset()
        assert s.mail("app@devices.example", ["BODY=BINARYMIME"]) == (555, b"5.5.4 Unsupported parameter")
    (stored,) = gateway.wait_until(lambda: gateway.mailbox("frank.auth@corp.example"), what="the AUTH=<> message")
    assert client_bytes(stored) == b"Subject: dummy auth\r\n\r\nhi\r\n"
