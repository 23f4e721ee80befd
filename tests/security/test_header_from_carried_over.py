"""
Issue 16 item 8: `check_header_from` must judge each message's own From:.

The attack: a first, honest message sets the remembered From:, then a second
message that is all header (no blank line, so the header scan never saw its
end) carries `From: ceo@...` and was judged by the first message's From:.
"""

from tests.smtpd.test_tls_auth import Client, users_path  # noqa: F401 (fixture)

SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"


def _transaction(c):
    assert c.send("MAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\nDATA\r\n")[-1].startswith("354")


def test_headers_only_message_is_judged_by_its_own_from(users_path):
    c = Client(users_path, auth_settings={"check_header_from": True})
    c.login()
    _transaction(c)
    assert c.send("From: Scanner <scanner01@corp.example>\r\n\r\nscan\r\n.\r\n")[0].startswith("250 ")
    _transaction(c)
    assert c.send("From: Boss <ceo@corp.example>\r\nSubject: pay this\r\n.\r\n") == [SEND_AS_DENIED]
    assert len(c.handler.finished) == 1 and c.handler.transactions[-1].aborted


def test_headers_only_message_with_an_allowed_from_still_goes(users_path):
    """The fix finishes the header scan at the end of the message; a good header-only message is accepted."""
    c = Client(users_path, auth_settings={"check_header_from": True})
    c.login()
    _transaction(c)
    assert c.send("From: ceo@corp.example\r\n\r\nx\r\n.\r\n") == [SEND_AS_DENIED]
    _transaction(c)
    assert c.send("From: scanner01@corp.example\r\nSubject: s\r\n.\r\n")[0].startswith("250 ")


def test_bdat_headers_only_message_without_final_newline(users_path):
    c = Client(users_path, auth_settings={"check_header_from": True})
    c.login()
    _transaction(c)
    c.send("From: scanner01@corp.example\r\n\r\nok\r\n.\r\n")
    c.send("MAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\n")
    body = b"From: ceo@corp.example"
    assert c.send(b"BDAT %d LAST\r\n" % len(body) + body) == [SEND_AS_DENIED]
