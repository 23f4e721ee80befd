"""gateway/nexthop.py: what each kind of next hop is called, which queue a recipient waits in, and its concurrency."""

from gateway.config import HostPort, SendConnector
from gateway.nexthop import MAILBOX, HopKind, NextHop

SMART = SendConnector("Partner", ("partner.example",), (HostPort("192.0.2.25", 25),), max_connections=3)
MX = SendConnector("Internet", ("*",), ())


def test_the_mailbox_store_is_one_value_named_as_exchange_names_its_queue():
    """MAILBOX: kind mailbox, no connector, queue and metrics name "Mailbox Delivery", no connection limit of its own."""
    assert MAILBOX == NextHop() and MAILBOX.is_mailbox and MAILBOX.kind is HopKind.MAILBOX
    assert (MAILBOX.name, MAILBOX.queue_name("alice@corp.example"), MAILBOX.max_connections) == ("Mailbox Delivery", "Mailbox Delivery", None)
    assert str(MAILBOX) == "mailbox"


def test_a_smart_host_connector_is_one_queue_under_its_name():
    """Smart hosts: every recipient waits in the connector's queue; its max_connections bounds the hop."""
    hop = NextHop.via(SMART)
    assert hop.kind is HopKind.SMART_HOSTS and not hop.is_mailbox
    assert {hop.queue_name(a) for a in ("a@partner.example", "b@other.example")} == {"Partner"}
    assert (hop.name, hop.max_connections, str(hop)) == ("Partner", 3, 'send connector "Partner"')


def test_a_dns_routed_connector_queues_each_recipient_domain_apart():
    """DNS MX routing: the queue is the recipient's domain (lower case), as Exchange's per-domain queues; the name stays the connector's."""
    hop = NextHop.via(MX)
    assert hop.kind is HopKind.DNS_MX
    assert hop.queue_name("x@Outside.Example") == "outside.example"
    assert hop.name == "Internet"


def test_equal_connectors_are_one_hop_so_their_recipients_group_together():
    """A NextHop is a hashable value: the scheduler groups an attempt's recipients by it, the registry keys deliverers by it."""
    again = SendConnector("Partner", ("partner.example",), (HostPort("192.0.2.25", 25),), max_connections=3)
    assert NextHop.via(SMART) == NextHop.via(again)
    assert len({NextHop.via(SMART), NextHop.via(again), MAILBOX, NextHop()}) == 2
    assert NextHop.via(SMART) != NextHop.via(MX) and NextHop.via(SMART) != MAILBOX
