"""Which senders a user may use."""

import pytest

from gateway.auth.sendas import SenderPatterns, parse_pattern


def test_exact_domain_and_subdomain_patterns():
    p = SenderPatterns.of(["Scanner01@Corp.Example", "*@apps.corp.example", "*@*.dev.corp.example"])
    assert p.allows("scanner01@corp.example")
    assert p.allows("SCANNER01@corp.EXAMPLE")
    assert p.allows("anything@apps.corp.example")
    assert p.allows("x@ci.dev.corp.example")
    assert not p.allows("x@dev.corp.example")
    assert not p.allows("x@evilapps.corp.example")
    assert not p.allows("boss@corp.example")
    assert not p.allows("")


def test_null_sender_and_anything_only_when_listed():
    assert SenderPatterns.of(["<>"]).allows("")
    assert not SenderPatterns.of(["<>"]).allows("a@b.example")
    assert SenderPatterns.of(["*"]).allows("a@b.example")


def test_proxy_address_prefix_is_dropped():
    assert SenderPatterns.of(["SMTP:app@corp.example"]).patterns == ("app@corp.example",)


@pytest.mark.parametrize("text", ["corp.example", "a*@corp.example", "*@", "@corp.example", "x@bad_domain"])
def test_bad_patterns_are_refused(text):
    with pytest.raises(ValueError):
        parse_pattern(text)
