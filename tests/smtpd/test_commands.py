"""gateway/smtpd/commands.py: the pure parts (XFORWARD attributes); the commands on the wire are in test_protocol.py."""

import pytest

from gateway.errors import Reply, SMTPError
from gateway.smtpd.commands import xforward_attributes


def test_xforward_attributes_are_xtext_decoded_and_the_address_normalised():
    """ADDR loses an IPv6: prefix and is written the way connector selection writes addresses; [UNAVAILABLE] is no value."""
    assert xforward_attributes("ADDR=IPv6:2001:DB8::1 NAME=[UNAVAILABLE] HELO=a+2Bb") == {"ADDR": "2001:db8::1", "HELO": "a+b"}


@pytest.mark.parametrize("arg", ["", "BOGUS=1", "NAME", "HELO=a+0Db", "ADDR=not-an-address", "HELO=a+ZZ"])
def test_bad_or_unsafe_xforward_attributes_are_501(arg):
    """Unknown keys, missing '=', control characters (header injection), bad addresses, bad xtext, nothing at all."""
    with pytest.raises(SMTPError) as e:
        xforward_attributes(arg)
    assert e.value.reply is Reply.BAD_SYNTAX
