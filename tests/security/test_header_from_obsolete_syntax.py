"""
Security review: `check_header_from` read the header only up to the first
line its field pattern did not match. `X : y` (RFC 5322 obsolete syntax,
white space before the colon) ended it there, so a second `From: ceo@...`
after it was never judged, yet reached the mailbox as a header field. Such a
line is a field now; a line that is truly no field ends the header for the
check and for what is delivered (a blank line is written before it).
"""

import pytest

from tests.smtpd.test_tls_auth import Client, users_path  # noqa: F401 (fixture)

SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"


def _session(users_path):
    c = Client(users_path, auth_settings={"check_header_from": True})
    c.login()
    assert c.send("MAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\nDATA\r\n")[-1].startswith("354")
    return c


@pytest.mark.parametrize("line", ["X : y", "X\t: y", "From : ceo@corp.example"])
def test_a_second_from_after_an_obsolete_syntax_field_is_judged(users_path, line):
    c = _session(users_path)
    sent = f"From: scanner01@corp.example\r\n{line}\r\nFrom: ceo@corp.example\r\nSubject: pay\r\n\r\nx\r\n.\r\n"
    assert c.send(sent) == [SEND_AS_DENIED]
    assert c.handler.finished == [] and c.handler.transactions[-1].aborted


def test_a_from_obsolete_syntax_alone_is_judged(users_path):
    c = _session(users_path)
    assert c.send("From : ceo@corp.example\r\n\r\nx\r\n.\r\n") == [SEND_AS_DENIED]


def test_a_from_after_a_line_that_is_no_field_is_delivered_as_body(users_path):
    """The check stops at `not a field`; so does the header section delivered: a blank line is written before it."""
    c = _session(users_path)
    sent = b"From: scanner01@corp.example\r\nnot a field\r\nFrom: ceo@corp.example\r\n\r\nx\r\n"
    assert c.send(sent + b".\r\n")[0].startswith("250 ")
    (txn,) = c.handler.finished
    assert txn.body == b"From: scanner01@corp.example\r\n\r\nnot a field\r\nFrom: ceo@corp.example\r\n\r\nx\r\n"
