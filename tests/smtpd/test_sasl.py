"""SASL PLAIN and LOGIN as state machines: challenges, credentials, cancel, bad input."""

import base64

import pytest

from gateway.errors import Reply, SMTPError
from gateway.smtpd.sasl import Credentials, Login, Plain


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_plain_with_initial_response():
    assert Plain().start(b64("\0scanner01\0pässword")) == Credentials("scanner01", "pässword")


def test_plain_without_initial_response_gets_an_empty_challenge():
    m = Plain()
    assert m.start(None) == ""
    assert m.respond(b64("scanner01\0scanner01\0pw")) == Credentials("scanner01", "pw")


def test_login_asks_for_username_then_password():
    m = Login()
    assert m.start(None) == "VXNlcm5hbWU6"
    assert m.respond(b64("scanner01")) == "UGFzc3dvcmQ6"
    assert m.respond(b64("pw")) == Credentials("scanner01", "pw")


def test_login_initial_response_is_the_username():
    m = Login()
    assert m.start(b64("scanner01")) == "UGFzc3dvcmQ6"
    assert m.respond("=") == Credentials("scanner01", "")


@pytest.mark.parametrize(
    "mechanism, line, reply",
    [
        (Plain, "*", Reply.AUTH_CANCELLED),
        (Login, "*", Reply.AUTH_CANCELLED),
        (Plain, "not base64!", Reply.AUTH_BAD_BASE64),
        (Plain, b64("only-two\0parts"), Reply.AUTH_FAILED),
        (Plain, b64("boss\0scanner01\0pw"), Reply.AUTH_FAILED),
        (Plain, base64.b64encode(b"\0u\0\xff").decode(), Reply.AUTH_FAILED),
    ],
)
def test_bad_responses(mechanism, line, reply):
    m = mechanism()
    m.start(None)
    with pytest.raises(SMTPError) as e:
        m.respond(line)
    assert e.value.reply == reply
