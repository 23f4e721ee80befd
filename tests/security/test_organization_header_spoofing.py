"""
Issue 16 item 11: a client on port 25 wrote `X-MS-Exchange-Organization-*`
fields (a spam verdict, "authenticated as internal") and the gateway's own
`X-Exgateway-*` ones, and they reached the mail store as if the
organisation had set them. Exchange's header firewall removes them from
sessions without ExchangeServers rights; so does the gateway now.
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.intake import IntakeHandler
from gateway.policy.checks import SessionPolicy
from gateway.queue.store import QueueStore, body_bytes
from gateway.route.router import Router
from gateway.smtpd.protocol import ESMTPServer
from tests.test_intake import Scheduler

DATED = b"Message-ID: <m1@outside.example>\r\nDate: Tue, 17 Nov 2026 10:00:00 +0000\r\n"
FORGED = DATED + (
    b"X-MS-Exchange-Organization-SCL: -1\r\n"
    b"From: ceo@outside.example\r\n"
    b"x-ms-exchange-organization-authas: Internal\r\n"
    b"X-MS-Exchange-Organization-AuthSource:\r\n\tmail.corp.example\r\n"
    b"X-MS-Exchange-Forest-RulesExecuted: mail\r\n"
    b"X-Exgateway-Queue-ID: 42\r\n"
    b"Subject: invoice\r\n"
    b"X-MS-Exchange-Organization-Note-In-Body-Is-Fine: yes\r\n"
    b"\r\n"
    b"X-MS-Exchange-Organization-SCL: -1 (in the body: text, left alone)\r\n"
)
CLEAN = DATED + (
    b"From: ceo@outside.example\r\n"
    b"Subject: invoice\r\n"
    b"\r\n"
    b"X-MS-Exchange-Organization-SCL: -1 (in the body: text, left alone)\r\n"
)


def session(connector_name: str, tmp_path, ip: str):
    cfg = testing.config()
    connector = next(c for c in cfg.receive_connectors if c.name == connector_name)
    domains = AcceptedDomains(cfg.accepted_domains)
    store = QueueStore(tmp_path / "queue", lambda f, *a: succeed(f(*a)))
    store.prepare()
    clock = Clock()
    clock.advance(1_795_000_000)
    scheduler = Scheduler()
    proto = ESMTPServer(connector, IntakeHandler(store, Router(domains), scheduler, clock, "hub.corp.example"), SessionPolicy(domains), clock,
                        node=testing.node_credential())
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", ip, 40000))
    proto.makeConnection(transport)
    if connector.role == "hub":
        # A gateway node proves the node secret before it may send (gateway/auth/node.py).
        proto.dataReceived(b"EHLO x\r\n" + testing.node_login(testing.node_credential()))
        assert transport.value().split(b"\r\n")[-2] == b"235 2.7.0 Authentication successful"
        transport.clear()

    def submit(body: bytes, chunk: int = 0) -> bytes:
        proto.dataReceived(b"EHLO x\r\nMAIL FROM:<a@outside.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
        data = body.replace(b"\r\n.", b"\r\n..") + b".\r\n"
        for i in range(0, len(data), chunk or len(data)):
            proto.dataReceived(data[i : i + (chunk or len(data))])
        assert transport.value().split(b"\r\n")[-2].startswith(b"250 2.6.0"), transport.value()
        transport.clear()
        (envelope,) = scheduler.queued[-1:]
        stored = body_bytes(store.body_path(envelope.queue_id), envelope.size)
        return stored[stored.index(b"\r\n", stored.index(b"\tWed,")) + 2 :]  # after our Received header

    return submit


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_organization_headers_from_an_anonymous_client_never_reach_the_queue(tmp_path, chunk):
    submit = session("Default Frontend", tmp_path, "203.0.113.5")
    assert submit(FORGED, chunk) == CLEAN


def test_a_message_that_is_all_header_is_filtered_to_its_end(tmp_path):
    submit = session("Default Frontend", tmp_path, "203.0.113.5")
    assert submit(DATED + b"Subject: s\r\nX-MS-Exchange-Organization-SCL: -1\r\n") == DATED + b"Subject: s\r\n"


def test_another_gateway_node_passes_them_on(tmp_path):
    """A hub session from a gateway node (ExchangeServers, every right): the organisation's headers are its own."""
    submit = session("Default", tmp_path, "127.0.0.1")
    assert submit(FORGED) == FORGED


OBSOLETE = DATED + (
    b"Received : from x\r\n"
    b"X-MS-Exchange-Organization-SCL: -1\r\n"
    b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"body\r\n"
)


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_a_field_with_white_space_before_its_colon_does_not_end_the_filtering(tmp_path, chunk):
    """
    Security review: `Received : x` (RFC 5322 obsolete syntax) did not match
    the firewall's field pattern, so it ended the header for the firewall and
    both organisation fields after it reached the queue. It is a field now.
    """
    submit = session("Default Frontend", tmp_path, "203.0.113.5")
    assert submit(OBSOLETE, chunk) == DATED + b"Received : from x\r\nSubject: hi\r\n\r\nbody\r\n"


def test_an_organisation_field_with_white_space_before_its_colon_is_removed(tmp_path):
    submit = session("Default Frontend", tmp_path, "203.0.113.5")
    assert submit(DATED + b"X-MS-Exchange-Organization-SCL\t : -1\r\nSubject: hi\r\n\r\nbody\r\n") == DATED + b"Subject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_fields_after_a_line_that_is_no_field_stay_body(tmp_path, chunk):
    """
    A line that is no field ends the header for the firewall; a blank line is
    written before it, so the organisation fields after it are body text for
    every later reader too, not header fields that were never filtered.
    """
    submit = session("Default Frontend", tmp_path, "203.0.113.5")
    sent = DATED + b"not a field\r\nX-MS-Exchange-Organization-SCL: -1\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\n\r\nbody\r\n"
    assert submit(sent, chunk) == DATED + (
        b"\r\n"
        b"not a field\r\nX-MS-Exchange-Organization-SCL: -1\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\n\r\nbody\r\n"
    )


def test_a_last_field_without_its_line_end_is_filtered(tmp_path):
    """BDAT may end a message without CRLF: its last line is filtered like the others."""
    from gateway.headerfirewall import HeaderFirewall

    txn = testing.FakeHandler().begin(None, None)
    firewall = HeaderFirewall(txn, (b"x-ms-exchange-organization-",), 1000)
    firewall.write(b"Subject: s\r\nX-MS-Exchange-Organization-SCL: -1")
    firewall.finish()
    assert txn.body == b"Subject: s\r\n"
    txn = testing.FakeHandler().begin(None, None)
    firewall = HeaderFirewall(txn, (b"x-ms-exchange-organization-",), 1000)
    firewall.write(b"Subject: s\r\nbody")
    firewall.finish()
    assert txn.body == b"Subject: s\r\n\r\nbody"
