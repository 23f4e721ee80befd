"""Property-based: xtext (RFC 3461, the XFORWARD value encoding) round-trips any text, and decoding refuses only with ValueError."""

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.smtpd import xtext


@given(st.text())
@example("jürgen.müller@corp.example")
@example("a+b=c \r\n")
def test_decode_of_encode_is_the_text(text):
    encoded = xtext.encode(text)
    assert encoded.isascii() and " " not in encoded and "=" not in encoded
    assert xtext.decode(encoded) == text


@given(st.text(alphabet=st.sampled_from("+0123456789ABCDEFabcdefgxyz=%"), max_size=30))
@example("+")
@example("+4")
@example("+C3")
def test_decode_refuses_only_with_value_error(text):
    try:
        decoded = xtext.decode(text)
    except ValueError:
        return
    assert isinstance(decoded, str)
