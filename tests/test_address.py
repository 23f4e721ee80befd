"""Strict RFC 5321 path parsing, and the relay tricks it exposes to policy."""

import pytest

from gateway.address import Address, parse_path
from gateway.errors import SMTPError


def rcpt(arg: str) -> Address:
    return parse_path(arg, sender=False)[0]


def test_plain_address_lowercases_domain_only():
    a = rcpt("<Alice.Smith@CORP.Example>")
    assert (a.local, a.domain, str(a)) == ("Alice.Smith", "corp.example", "Alice.Smith@corp.example")


def test_parameters_are_split_and_uppercased():
    _addr, params = parse_path("<a@b.example> size=100 BODY=8BITMIME", sender=True)
    assert params == {"SIZE": "100", "BODY": "8BITMIME"}


def test_source_route_is_dropped_and_final_domain_decides():
    """`<@corp.example:x@evil.example>` routes to evil.example, never corp.example."""
    a = rcpt("<@corp.example,@relay.corp.example:user@evil.example>")
    assert str(a) == "user@evil.example"


@pytest.mark.parametrize(
    "arg",
    [
        "<user%evil.example@corp.example>",
        "<evil.example!user@corp.example>",
        '<"user@evil.example"@corp.example>',
    ],
)
def test_routing_characters_are_flagged(arg):
    """Percent hack, bang path and quoted @ parse, but are marked for refusal."""
    assert rcpt(arg).has_routing_characters
    assert rcpt(arg).domain == "corp.example"


def test_quoted_local_part_keeps_its_meaning():
    a = rcpt('<"john smith"@corp.example>')
    assert a.quoted and a.local == "john smith" and str(a) == '"john smith"@corp.example'
    assert not a.has_routing_characters


def test_ip_literal_is_a_literal_not_a_domain():
    a = rcpt("<postmaster@[192.0.2.1]>")
    assert a.literal and a.domain == "[192.0.2.1]"
    assert rcpt("<x@[IPv6:2001:db8::1]>").literal


@pytest.mark.parametrize(
    "arg",
    [
        "<user@corp.example.>",  # trailing dot: not a Domain
        "<user@corp..example>",
        "<user@-corp.example>",
        "<.user@corp.example>",
        "<us..er@corp.example>",
        "<user@>",
        "<@corp.example>",
        "<user>",
        "<user@[300.1.1.1]>",
        "<user@corp.example",
        "<user@corp.example>junk",
        "<@a.example user@corp.example>",
        "<user@corp.éxample>",
        '<"unterminated@corp.example>',
        "<" + "a" * 65 + "@corp.example>",
        "<>",
    ],
)
def test_malformed_recipients_are_refused_with_501_5_1_3(arg):
    with pytest.raises(SMTPError) as e:
        rcpt(arg)
    assert (e.value.reply.code, e.value.reply.enhanced) == (501, "5.1.3")


def test_null_sender_is_allowed_only_for_mail():
    assert parse_path("<>", sender=True)[0].null


def test_bad_sender_uses_5_1_7():
    with pytest.raises(SMTPError) as e:
        parse_path("<bad@@x>", sender=True)
    assert e.value.reply.enhanced == "5.1.7"


def test_angle_bracket_inside_quotes_does_not_end_the_path():
    a = rcpt('<"a>b"@corp.example> ')
    assert a.local == "a>b"


def test_a_quoted_local_part_that_needs_no_quotes_is_the_plain_mailbox():
    """`"bob"@corp.example` and bob@corp.example are one mailbox (RFC 5321 4.1.2): same address, same Maildir."""
    from pathlib import Path

    from gateway.deliver.maildir import mailbox_path

    plain, _ = parse_path("<bob@corp.example>", sender=False)
    for text in ('<"bob"@corp.example>', '<"b\\ob"@corp.example>', '<"Bob"@Corp.Example>'):
        quoted, _ = parse_path(text, sender=False)
        assert not quoted.quoted and str(quoted).lower() == "bob@corp.example"
        assert mailbox_path(Path("/srv/mail"), str(quoted)) == mailbox_path(Path("/srv/mail"), str(plain))
    dotted, _ = parse_path('<"first.last"@corp.example>', sender=False)
    assert str(dotted) == "first.last@corp.example"
    for needs_quotes in ('"bob smith"', '"bob."', '".bob"', '"a..b"', '""', '"a@b"'):
        a, _ = parse_path(f"<{needs_quotes}@corp.example>", sender=False)
        assert a.quoted and str(a) == f"{needs_quotes}@corp.example"
