"""
Property-based: the envelope address parser (gateway/address.py) raises
nothing but its typed syntax error, and what it parses prints back to an
address that parses to the same thing (decode(encode(x)) == x).
"""

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.address import NULL, POSTMASTER, Address, parse_mailbox, parse_parameters, parse_path
from gateway.errors import SMTPError
from tests.fuzz.strategies import addresses, parameters, tricky_text

paths = st.one_of(
    addresses().map(lambda a: f"<{a}>"),
    st.builds(lambda a, p: f"<{a}> {p}", addresses(), parameters),
    addresses(),
    tricky_text(80),
)


@given(paths, st.booleans(), st.booleans())
@example('<"a\\"@b"@corp.example>', False, False)
@example('<@a,@b:"x y"@[IPv6:::1]>', True, False)
@example("<\"\\\x7f\"@corp.example>", False, False)
@example("<\xa0@0> SMTPUTF8", True, False)  # found by tox -e fuzz: a UTF-8 address prints back as one (parsed with utf8)
@example('<"\ud800"@corp.example>', False, True)  # found by tox -e fuzz: a lone surrogate raised UnicodeEncodeError
def test_parse_path_raises_only_its_syntax_error_and_round_trips(text, sender, utf8):
    """`utf8`: a RCPT in a SMTPUTF8 transaction (a MAIL takes it from its own SMTPUTF8 parameter)."""
    try:
        address, params = parse_path(text, sender=sender, utf8=utf8)
    except SMTPError:
        return
    assert isinstance(address, Address) and all(k == k.upper() for k in params)
    if address in (NULL, POSTMASTER):
        return
    assert str(address).isascii() or utf8 or "SMTPUTF8" in params
    again = parse_mailbox(str(address), sender=sender, utf8=not str(address).isascii())
    assert again == address, (text, str(address), again)
    assert address.domain == address.domain.lower()


@given(st.lists(st.sampled_from("abcxyz019!#$%&'*+-/=?^_`{|}~"), min_size=1, max_size=20).map("".join),
       st.lists(st.sampled_from(["corp", "example", "a-b", "x1"]), min_size=1, max_size=3).map(".".join))
def test_a_plain_address_prints_as_written(local, domain):
    """Any dot-atom local part with an LDH domain parses to itself: no quoting added, nothing lost."""
    text = f"{local}@{domain}"
    address = parse_mailbox(text)
    assert str(address) == text and not address.quoted


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20))
@example("")
@example('a"b')
@example("x y")
def test_any_printable_local_part_survives_quoting(local):
    """A quoted local part holding any printable ASCII prints back to one that parses to the same mailbox."""
    quoted = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        address = parse_mailbox(f"{quoted}@corp.example")
    except SMTPError:
        assert len(quoted) > 64  # only the RFC 5321 length limit may refuse it
        return
    assert address.local == local
    assert parse_mailbox(str(address)) == address


@given(tricky_text(60))
def test_parameters_raise_only_a_syntax_error(text):
    try:
        params = parse_parameters(text)
    except SMTPError:
        return
    assert all(k.upper() == k and k for k in params)
