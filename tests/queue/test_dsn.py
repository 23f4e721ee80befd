"""RFC 3464 reports: what the sender reads, and what a machine parses."""

import email
from email import policy

from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.dsn import build_dsn, read_headers, status_of

ENV = Envelope("42", 42, "<m42@corp.example>", "app@corp.example", (), 1_795_000_000.0, 100)
HEADERS = b"Received: from x\r\nSubject: Monthly report\r\nFrom: app@corp.example\r\n"


def test_status_from_the_reply():
    assert status_of("550 5.1.1 User unknown", "5.0.0") == "5.1.1"
    assert status_of("550 User unknown", "5.0.0") == "5.0.0"
    assert status_of("451 busy", "5.0.0") == "4.0.0"
    assert status_of(None, "5.0.0") == "5.0.0"


def test_a_non_delivery_report_parses_as_a_delivery_status_report():
    rcpt = Recipient("bob@outside.example", RecipientState.FAILED, 1, "550 5.1.1 <bob@outside.example>: User unknown")
    raw = build_dsn("failed", ENV, [rcpt], HEADERS, "mail.corp.example", 1_795_000_100.0, "b1", message_id="<n1@mail.corp.example>")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Undeliverable: Monthly report" and msg["To"].addresses[0].addr_spec == "app@corp.example"
    assert msg["Auto-Submitted"] == "auto-replied" and msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, status, original = msg.get_payload()
    assert "could not be delivered" in human.get_content() and "User unknown" in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.corp.example"
    assert (per_rcpt["Final-Recipient"], per_rcpt["Action"], per_rcpt["Status"]) == ("rfc822; bob@outside.example", "failed", "5.1.1")
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@outside.example>: User unknown"
    assert original.get_content_type() == "text/rfc822-headers"
    assert b"Subject: Monthly report" in raw and raw.endswith(b"\r\n--b1--\r\n")
    assert all(line.endswith(b"\r") or line == b"" for line in raw.split(b"\n")[:-1])


def test_a_delay_notice_says_it_keeps_trying_and_until_when():
    rcpt = Recipient("bob@outside.example", RecipientState.PENDING, 3, "451 4.4.0 next hop unreachable")
    raw = build_dsn("delayed", ENV, [rcpt], HEADERS, "mail.corp.example", 1_795_014_400.0, "b2", retry_until=1_795_172_800.0)
    text = raw.decode()
    assert "Subject: Delivery delayed: Monthly report" in text
    assert "Action: delayed\r\nStatus: 4.4.0\r\n" in text and "Will-Retry-Until: " in text
    assert "you need not send it again" in text


def test_read_headers_stops_at_the_body(tmp_path):
    path = tmp_path / "1.eml"
    path.write_bytes(HEADERS + b"\r\nsecret body\r\n")
    assert read_headers(path) == HEADERS


def test_non_ascii_and_line_breaks_in_any_field_cost_a_question_mark_not_the_notice():
    """A Message-ID with a byte that is not ASCII (decoded as U+FFFD), a UTF-8 address, a reply with a line break."""
    env = Envelope("42", 42, "<caf\ufffd@corp.example>", "s\u00e9@corp.example", (), 1_795_000_000.0, 100)
    rcpt = Recipient("b\u00f6b@outside.example", RecipientState.FAILED, 1, "550 5.1.1 no\r\nInjected: yes")
    raw = build_dsn("failed", env, [rcpt], b"Subject: caf\xc3\xa9\r\n", "mail.corp.example", 1_795_000_100.0, "b3", message_id="<n@x>")
    head = raw[: raw.index(b"Content-Type: text/rfc822-headers")]
    assert head.isascii()
    assert b"Your message <caf?@corp.example> could not be delivered" in raw
    assert b"To: <s?@corp.example>\r\n" in raw and b"Final-Recipient: rfc822; b?b@outside.example\r\n" in raw
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no??Injected: yes\r\n" in raw and b"\r\nInjected:" not in raw
    assert b"Subject: Undeliverable: caf??\r\n" in raw  # two bytes, two marks
