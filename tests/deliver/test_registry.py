"""gateway/deliver/registry.py: the deliverer for each NextHop, made once per send connector, and all closed at stop."""

from gateway.config import HostPort, SendConnector
from gateway.deliver.registry import Deliverers
from gateway.nexthop import MAILBOX, NextHop
from gateway.testing import FakeDeliverer

PARTNER = SendConnector("Partner", ("partner.example",), (HostPort("192.0.2.25", 25),))


def registry():
    made: list[SendConnector] = []

    def make(connector):
        made.append(connector)
        return FakeDeliverer()

    return Deliverers(FakeDeliverer(), make), made


def test_the_mailbox_hop_gets_mailbox_delivery_and_no_route_gets_none():
    """MAILBOX: the mailbox deliverer; None (no route): no deliverer, so the scheduler fails the recipient with 550 5.4.4."""
    deliverers, made = registry()
    assert deliverers.get(MAILBOX) is deliverers.mailbox
    assert deliverers.get(None) is None
    assert made == []


def test_a_send_connector_gets_its_deliverer_once_and_keeps_it():
    """The first hop through Partner makes its deliverer; later ones (an equal NextHop) reuse it and its connections."""
    deliverers, made = registry()
    first = deliverers.get(NextHop.via(PARTNER))
    assert deliverers.get(NextHop.via(PARTNER)) is first
    assert made == [PARTNER]


def test_close_closes_every_deliverer_made():
    """At stop every deliverer is closed through IDeliverer.close, the mailbox's included: none is asked whether it can be."""
    deliverers, _ = registry()
    partner = deliverers.get(NextHop.via(PARTNER))
    deliverers.close()
    assert (deliverers.mailbox.closed, partner.closed) == (1, 1)
