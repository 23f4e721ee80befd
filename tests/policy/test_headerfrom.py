"""[authentication] header_from = "authenticated_user": a From: the user may not send as is replaced, not refused."""

import pytest

from gateway import testing
from gateway.config import ConfigError
from tests.smtpd.test_tls_auth import Client, users_path  # noqa: F401 (fixture)

REPLACE = {"check_header_from": True, "header_from": "authenticated_user"}


def submit(c, message: bytes):
    c.send("MAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\nDATA\r\n")
    return c.send(message + b".\r\n")


def test_a_foreign_from_is_replaced_and_nothing_else_touched(users_path):
    """The whole From: field (display name and folding too) becomes the user's address; every other byte as sent."""
    c = Client(users_path, auth_settings=REPLACE)
    c.login()
    message = b"Subject: scan\r\nFrom: Boss\r\n <boss@corp.example>\r\nTo: a@ext.example\r\n\r\nFrom: in the body\r\n"
    assert submit(c, message)[0].startswith("250 ")
    txn = c.handler.transactions[-1]
    assert txn.finished and not txn.aborted
    assert txn.body == b"Subject: scan\r\nFrom: scanner01@corp.example\r\nTo: a@ext.example\r\n\r\nFrom: in the body\r\n"


def test_an_allowed_from_is_left_alone(users_path):
    c = Client(users_path, auth_settings=REPLACE)
    c.login()
    message = b"From: Scanner <scan7@apps.corp.example>\r\nSubject: s\r\n\r\nbody\r\n"
    submit(c, message)
    assert c.handler.transactions[-1].body == message


def test_a_message_without_from_gets_one_and_its_first_line_stays_body(users_path):
    c = Client(users_path, auth_settings=REPLACE)
    c.login()
    submit(c, b"Printer 4 is out of toner.\r\n")
    assert c.handler.transactions[-1].body == b"From: scanner01@corp.example\r\n\r\nPrinter 4 is out of toner.\r\n"
    submit(c, b"Subject: only a header\r\n")
    assert c.handler.transactions[-1].body == b"Subject: only a header\r\nFrom: scanner01@corp.example\r\n\r\n"


def test_a_second_from_is_replaced_too(users_path):
    """Two From: fields (the spoofing trick the check looks for): each one judged, the foreign one replaced."""
    c = Client(users_path, auth_settings=REPLACE)
    c.login()
    submit(c, b"From: scanner01@corp.example\r\nFrom: ceo@corp.example\r\n\r\nx\r\n")
    assert c.handler.transactions[-1].body == b"From: scanner01@corp.example\r\nFrom: scanner01@corp.example\r\n\r\nx\r\n"


def test_without_the_option_the_message_is_still_refused(users_path):
    c = Client(users_path, auth_settings={"check_header_from": True})
    c.login()
    assert submit(c, b"From: ceo@corp.example\r\n\r\nx\r\n") == [
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    ]


def test_header_from_must_be_a_known_choice():
    with pytest.raises(ConfigError) as e:
        testing.config(authentication={"header_from": "rewrite"})
    assert [p.key for p in e.value.problems] == ["authentication.header_from"]


def test_header_from_refusal_applies_only_to_authenticated_users_without_any_sender_right():
    """header_from_refusal: None without AUTH or check_header_from, 550 5.7.60 for a foreign or missing From:, None for the user's own."""
    from types import SimpleNamespace

    from gateway.auth.identity import Identity
    from gateway.auth.sendas import SenderPatterns
    from gateway.errors import Reply
    from gateway.policy.headerfrom import header_from_refusal
    from gateway.policy.rights import Principal
    from tests.smtpd.fakechannel import connector, session

    checking = SimpleNamespace(config=SimpleNamespace(check_header_from=True))
    s = session(connector(), Principal.AUTHENTICATED)
    assert header_from_refusal(s, checking, None, b"x@elsewhere.example") is None
    s.identity = Identity("scanner@corp.example", SenderPatterns.of(("scanner@corp.example",)))
    assert header_from_refusal(s, None, None, b"x@elsewhere.example") is None
    assert header_from_refusal(s, SimpleNamespace(config=SimpleNamespace(check_header_from=False)), None, b"x@e.example") is None
    assert header_from_refusal(s, checking, None, b"Scanner <scanner@corp.example>") is None
    assert header_from_refusal(s, checking, None, b"Boss <ceo@corp.example>") is Reply.SEND_AS_DENIED
    assert header_from_refusal(s, checking, None, None) is Reply.SEND_AS_DENIED
