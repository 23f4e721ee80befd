"""The relay rule and the sender rules, as pure decisions over rights."""

import pytest

from gateway.address import parse_mailbox
from gateway.domains import AcceptedDomain, AcceptedDomains, DomainType
from gateway.errors import SMTPError
from gateway.policy.checks import SessionPolicy
from gateway.policy.rights import PermissionGroup, Principal, Right, rights_for

DOMAINS = AcceptedDomains(
    [
        AcceptedDomain("corp", "corp.example"),
        AcceptedDomain("subs", "*.branch.example"),
        AcceptedDomain("relay", "partner.example", DomainType.INTERNAL_RELAY),
    ]
)
POLICY = SessionPolicy(DOMAINS)
ANON = rights_for(Principal.ANONYMOUS, frozenset({PermissionGroup.ANONYMOUS_USERS}))
RELAY = ANON | {Right.ACCEPT_ANY_RECIPIENT}


def reply(rights, address):
    try:
        POLICY.check_rcpt(rights, parse_mailbox(address), 0, 200)
    except SMTPError as e:
        return f"{e.reply.code} {e.reply.enhanced}"
    return "ok"


@pytest.mark.parametrize(
    "address, anonymous, relay",
    [
        ("alice@corp.example", "ok", "ok"),
        ("alice@CORP.EXAMPLE", "ok", "ok"),
        ("bob@x.branch.example", "ok", "ok"),
        ("bob@branch.example", "550 5.7.54", "ok"),  # a wildcard covers subdomains only
        ("carol@partner.example", "ok", "ok"),
        ("dave@elsewhere.example", "550 5.7.54", "ok"),
        ("dave@corp.example.evil.example", "550 5.7.54", "ok"),
        ("x@[192.0.2.1]", "550 5.7.54", "ok"),
        ("user%evil.example@corp.example", "501 5.1.3", "501 5.1.3"),
        ("evil.example!user@corp.example", "501 5.1.3", "501 5.1.3"),
        ('"user@evil.example"@corp.example', "501 5.1.3", "501 5.1.3"),
    ],
)
def test_relay_rule(address, anonymous, relay):
    """Accepted domains for everyone, any domain with Accept-Any-Recipient, routing tricks for no one."""
    assert reply(ANON, address) == anonymous
    assert reply(RELAY, address) == relay


def test_anonymous_users_group_rights_match_exchange():
    assert ANON == {
        Right.SUBMIT,
        Right.ACCEPT_ANY_SENDER,
        Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER,
        Right.ACCEPT_ROUTING_HEADERS,
    }


def test_exchange_servers_only_when_externally_secured():
    """Listing ExchangeServers on a connector gives anonymous clients nothing; XFORWARD only to a node that proved the secret."""
    groups = frozenset({PermissionGroup.EXCHANGE_SERVERS})
    assert rights_for(Principal.ANONYMOUS, groups) == frozenset()
    assert Right.ACCEPT_ANY_RECIPIENT in rights_for(Principal.EXTERNALLY_SECURED, groups)
    assert Right.ACCEPT_XFORWARD not in rights_for(Principal.EXTERNALLY_SECURED, groups)
    assert rights_for(Principal.GATEWAY_NODE, groups) == frozenset(Right)
    # Not even a grant makes XFORWARD anyone else's.
    granted = frozenset({(Principal.ANONYMOUS, Right.ACCEPT_XFORWARD)})
    assert Right.ACCEPT_XFORWARD not in rights_for(Principal.ANONYMOUS, frozenset({PermissionGroup.ANONYMOUS_USERS}), granted)


def test_mail_checks():
    sender = parse_mailbox("ceo@corp.example")
    with pytest.raises(SMTPError) as e:
        POLICY.check_mail(frozenset(), sender, None, 100)
    assert e.value.reply.code == 530
    with pytest.raises(SMTPError) as e:
        POLICY.check_mail(frozenset({Right.SUBMIT}), sender, None, 100)
    assert str(e.value.reply) == "550 5.7.1 Client does not have permissions to send as this sender"
    POLICY.check_mail(ANON, sender, 100, 100)
    with pytest.raises(SMTPError) as e:
        POLICY.check_mail(ANON, sender, 101, 100)
    assert e.value.reply.code == 552
