"""SMTPUTF8 addresses (RFC 6531): UTF-8 local parts and IDN domains, only in a SMTPUTF8 transaction."""

import pytest

from gateway.address import Address, AddressSyntaxError, parse_path, take_smtputf8
from gateway.errors import SMTPError


def test_a_mail_with_smtputf8_takes_a_utf8_local_part_and_an_idn_domain_as_its_a_label():
    address, params = parse_path("<jösé@Bücher.example> SMTPUTF8", sender=True)
    assert address == Address("jösé", "xn--bcher-kva.example")
    assert take_smtputf8(params) is True and params == {}


def test_a_rcpt_in_a_smtputf8_transaction_takes_utf8_quoted_and_plain():
    assert parse_path("<θέμα@corp.example>", sender=False, utf8=True)[0] == Address("θέμα", "corp.example")
    assert parse_path('<"jö sé"@corp.example>', sender=False, utf8=True)[0] == Address("jö sé", "corp.example", quoted=True)


@pytest.mark.parametrize("path,sender,utf8", [
    ("<jösé@corp.example>", True, False),
    ("<jösé@corp.example>", False, False),
    ("<jose@bücher.example>", False, False),
])
def test_without_smtputf8_a_non_ascii_address_is_still_refused(path, sender, utf8):
    with pytest.raises(AddressSyntaxError) as e:
        parse_path(path, sender=sender, utf8=utf8)
    assert str(e.value.reply) == ("501 5.1.7 Invalid address" if sender else "501 5.1.3 Invalid address")


@pytest.mark.parametrize("path", [
    "<a\u0085b@corp.example>",      # C1 control (NEL)
    "<a\u2028b@corp.example>",      # line separator
    "<" + "é" * 33 + "@corp.example>",  # 66 octets: over 64
    "<a@xn--zz-.example>",
    "<a@b\u00fccher..example>",
])
def test_utf8_addresses_still_have_rules(path):
    with pytest.raises(AddressSyntaxError):
        parse_path(path, sender=False, utf8=True)


def test_smtputf8_takes_no_value():
    with pytest.raises(SMTPError) as e:
        take_smtputf8({"SMTPUTF8": "yes"})
    assert str(e.value.reply) == "501 5.5.4 Invalid arguments"
    assert take_smtputf8({"SIZE": "1"}) is False
