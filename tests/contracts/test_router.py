"""
The router's contract: one set of assertions run against gateway.route.router.Router
and gateway.testing.FakeRouter, for what the intake, the scheduler and
`receive-connector test` rely on.
"""

from gateway.address import parse_mailbox
from gateway.config import HostPort, SendConnector
from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.nexthop import MAILBOX, HopKind, NextHop
from gateway.route.router import Router
from gateway.testing import FakeRouter

PARTNER = SendConnector("Partner", ("partner.example",), (HostPort("192.0.2.25", 25),))


class RouterContract:
    """Mailbox domain corp.example; send connector "Partner" for partner.example; nothing else routed."""

    def make_router(self):
        raise NotImplementedError

    def test_a_mailbox_domain_goes_to_the_mailbox_store(self):
        """user@corp.example: MAILBOX, and decide() says the same with the route column "mailbox"."""
        router = self.make_router()
        recipient = parse_mailbox("user@corp.example")
        assert router.route(recipient) == MAILBOX
        decision = router.decide(recipient)
        assert decision.hop == MAILBOX and decision.route_name == "mailbox" and decision.why

    def test_the_domain_is_matched_whatever_its_case(self):
        """RCPT TO:<User@CORP.Example> is the same mailbox domain."""
        assert self.make_router().route(parse_mailbox("User@CORP.Example")) == MAILBOX

    def test_a_routed_domain_goes_to_its_send_connector(self):
        """x@partner.example: the Partner send connector, named in the route column."""
        router = self.make_router()
        recipient = parse_mailbox("x@partner.example")
        assert router.route(recipient) == NextHop.via(PARTNER)
        assert router.route(recipient).connector is PARTNER and router.route(recipient).kind is HopKind.SMART_HOSTS
        assert router.decide(recipient).route_name == 'send connector "Partner"'
        assert router.send_connector("partner.example") is PARTNER

    def test_an_unrouted_domain_has_no_route(self):
        """x@nowhere.example: None (the intake refuses it at RCPT with 550 5.4.4), and no send connector."""
        router = self.make_router()
        recipient = parse_mailbox("x@nowhere.example")
        assert router.route(recipient) is None
        assert router.decide(recipient).route_name == "(no route)"
        assert router.send_connector("nowhere.example") is None

    def test_an_address_literal_is_not_routed(self):
        """user@[192.0.2.1]: None."""
        assert self.make_router().route(parse_mailbox("user@[192.0.2.1]")) is None

    def test_a_queued_address_routes_as_the_parsed_one_and_garbage_has_no_route(self):
        """route_address (the scheduler, per delivery attempt): the same answers from strings, None for one that does not parse."""
        router = self.make_router()
        assert router.route_address("user@corp.example") == MAILBOX
        assert router.route_address("x@partner.example") == NextHop.via(PARTNER)
        assert router.route_address("x@nowhere.example") is None
        assert router.route_address("not an address") is None
        # Asked again (the real router remembers answers): the same.
        assert router.route_address("x@partner.example") == NextHop.via(PARTNER)

    def test_without_recipient_validation_there_is_none_to_consult(self):
        """The intake looks for recipient_exists.check; with nothing configured it is None."""
        assert self.make_router().recipient_exists is None


class TestRouter(RouterContract):
    def make_router(self):
        return Router(AcceptedDomains([AcceptedDomain("corp", "corp.example")]), (PARTNER,))


class TestFakeRouter(RouterContract):
    def make_router(self):
        return FakeRouter(mailbox_domains=["corp.example"], routes={"partner.example": PARTNER})
