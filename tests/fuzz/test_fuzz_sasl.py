"""Property-based: AUTH PLAIN and LOGIN responses (gateway/smtpd/sasl.py) give credentials or an SMTPError, and round-trip."""

import base64

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import SMTPError
from gateway.smtpd.sasl import Credentials, Login, Plain

names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


@given(names, names, st.booleans())
@example("jürgen", "pässwörd", True)
def test_plain_gives_back_the_login_and_password(user, password, with_authzid):
    assert Plain().respond(b64(f"{user if with_authzid else ''}\0{user}\0{password}")) == Credentials(user, password)


@given(names, names)
def test_login_gives_back_the_login_and_password(user, password):
    mech = Login()
    assert mech.start(None) == Login.USERNAME
    assert mech.respond(b64(user) if user else "=") == Login.PASSWORD
    assert mech.respond(b64(password) if password else "=") == Credentials(user, password)


@given(st.one_of(st.text(max_size=40), st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())), st.sampled_from([Plain, Login]))
@example("*", Plain)
@example("====", Login)
def test_any_response_gives_credentials_a_challenge_or_an_smtp_error(line, mechanism):
    try:
        result = mechanism().respond(line)
    except SMTPError as e:
        assert 400 <= e.reply.code < 600
        return
    assert isinstance(result, (str, Credentials))
