"""
Sender-dependent routing (gateway/route/source.py): a send connector scoped
to a sender, receive connector or user takes that source's mail; the
recipient's address space is weighed first, the source next, cost last.
"""

import pytest

from gateway import testing
from gateway.address import parse_mailbox
from gateway.config import ConfigError
from gateway.domains import AcceptedDomains
from gateway.envelope import Envelope, Recipient
from gateway.nexthop import MAILBOX
from gateway.queue.format import decode_envelope, encode_envelope
from gateway.route.router import Router
from gateway.route.source import RouteSource

CFG = testing.config(send_connectors=[
    {"name": "Internet", "address_spaces": ["*"], "cost": 1},
    {"name": "Scanners via M365", "address_spaces": ["*"], "smart_hosts": ["smtp.office365.com:587"], "cost": 10,
     "source_senders": ["*@scan.corp.example"]},
    {"name": "CEO scanner", "address_spaces": ["*"], "smart_hosts": ["ceo-relay.corp.example"], "cost": 20,
     "source_senders": ["ceo-scanner@scan.corp.example"]},
    {"name": "Branch printers", "address_spaces": ["*"], "smart_hosts": ["branch-relay.corp.example"], "cost": 10,
     "source_senders": ["*@*.corp.example"]},
    {"name": "Frontend apps as erp", "address_spaces": ["*"], "smart_hosts": ["erp-relay.corp.example"],
     "source_receive_connectors": ["Default Frontend"], "source_users": ["ERP-App"]},
    {"name": "Partner", "address_spaces": ["partner.example"], "smart_hosts": ["mx.partner.example"]},
])
ROUTER = Router(AcceptedDomains(CFG.accepted_domains), CFG.send_connectors)
FRONTEND = "EXSERVER\\Default Frontend"


@pytest.mark.parametrize("sender, connector, user, rcpt, hop", [
    ("app@corp.example", FRONTEND, "", "x@outside.example", "Internet"),  # nothing scoped matches: the default
    ("mfp1@scan.corp.example", FRONTEND, "", "x@outside.example", "Scanners via M365"),  # scoped beats unscoped despite cost
    ("ceo-scanner@scan.corp.example", FRONTEND, "", "x@outside.example", "CEO scanner"),  # exact sender beats *@domain
    ("p1@branch7.corp.example", FRONTEND, "", "x@outside.example", "Branch printers"),
    ("MFP1@Scan.Corp.Example", FRONTEND, "", "x@outside.example", "Scanners via M365"),  # case does not matter
    ("erp@corp.example", FRONTEND, "erp-app", "x@outside.example", "Frontend apps as erp"),
    ("erp@corp.example", "EXSERVER\\Client Frontend", "erp-app", "x@outside.example", "Internet"),  # both kinds must match
    ("erp@corp.example", FRONTEND, "", "x@outside.example", "Internet"),
    ("mfp1@scan.corp.example", FRONTEND, "", "y@partner.example", "Partner"),  # the recipient's exact space first
    ("mfp1@scan.corp.example", FRONTEND, "", "alice@corp.example", MAILBOX),
    ("", FRONTEND, "", "x@outside.example", "Internet"),  # the null sender matches no source_senders
])
def test_the_most_specific_route_for_a_source(sender, connector, user, rcpt, hop):
    got = ROUTER.route(parse_mailbox(rcpt), RouteSource(sender, connector, user))
    assert (got if got == MAILBOX else got.name) == hop


def test_without_a_source_only_unscoped_connectors_route():
    assert ROUTER.route(parse_mailbox("x@outside.example")).name == "Internet"
    scoped_only = testing.config(send_connectors=[{"name": "S", "address_spaces": ["*"], "source_senders": ["*@scan.corp.example"]}])
    router = Router(AcceptedDomains(scoped_only.accepted_domains), scoped_only.send_connectors)
    assert router.route(parse_mailbox("x@outside.example"), RouteSource("a@corp.example")) is None
    assert router.route(parse_mailbox("x@outside.example"), RouteSource("a@scan.corp.example")).name == "S"


def test_a_queued_envelope_routes_the_same_after_a_restart():
    """The source comes from what the envelope file keeps: sender, receive connector, AUTH login."""
    envelope = Envelope("1", 1, "<m@x>", "erp@corp.example", (Recipient("x@outside.example"),), 0.0, 10,
                        connector=FRONTEND, auth="erp-app")
    reread = decode_envelope(encode_envelope(envelope))
    assert ROUTER.route_address("x@outside.example", RouteSource.of(reread)).name == "Frontend apps as erp"
    # Remembered per source: another sender's route for the same address is its own.
    assert ROUTER.route_address("x@outside.example", RouteSource("app@corp.example", FRONTEND)).name == "Internet"
    assert ROUTER.route_address("x@outside.example", RouteSource.of(reread)).name == "Frontend apps as erp"


def test_the_decision_says_which_source_matched():
    decision = ROUTER.decide(parse_mailbox("x@outside.example"), RouteSource("mfp1@scan.corp.example", FRONTEND))
    assert decision.why == "outside.example is not an accepted domain; the message's source matches source_senders *@scan.corp.example"


def test_source_settings_are_checked():
    with pytest.raises(ConfigError) as e:
        testing.config(send_connectors=[{"name": "S", "address_spaces": ["*"], "source_senders": ["scan.corp.example", "a*@x.example"],
                                         "source_receive_connectors": ["Client Frontend"]}])
    assert [f"{p.key}: {p.reason}" for p in e.value.problems] == [
        "send_connectors[0].source_senders[0]: 'scan.corp.example' is not user@domain, *@domain or *@*.domain",
        "send_connectors[0].source_senders[1]: 'a*@x.example' is not user@domain, *@domain or *@*.domain",
        "send_connectors[0].source_receive_connectors[0]: no receive connector is called 'Client Frontend'",
    ]
