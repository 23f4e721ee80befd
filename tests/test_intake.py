"""The hub's intake through the real protocol: trace headers, exact bytes, the queued reply."""

import itertools

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.envelope import Envelope
from gateway.intake import IntakeHandler
from gateway.policy.checks import SessionPolicy
from gateway.queue.spares import SpareFiles
from gateway.queue.store import QueueStore, body_bytes
from gateway.route.router import Router
from gateway.smtpd.protocol import ESMTPServer

NOW = 1_795_000_000.0


class Scheduler:
    def __init__(self):
        self.queued: list[Envelope] = []
        self.bodies: list[bytes | None] = []

    def enqueue(self, envelope, body=None, just_acknowledged=False):
        assert just_acknowledged, "the intake hands over a message whose 250 is not written yet"
        self.queued.append(envelope)
        self.bodies.append(body)


class Hub:
    def __init__(self, tmp_path):
        cfg = testing.config()
        connector = next(c for c in cfg.receive_connectors if c.role == "hub")
        domains = AcceptedDomains(cfg.accepted_domains)
        self.store = QueueStore(tmp_path / "queue", lambda f, *a: succeed(f(*a)))
        self.store.prepare()
        self.scheduler = Scheduler()
        self.clock = clock = Clock()
        clock.advance(NOW)
        self.handler = IntakeHandler(self.store, Router(domains), self.scheduler, clock, "hub.corp.example")
        self.proto = ESMTPServer(connector, self.handler, SessionPolicy(domains), clock, node=testing.node_credential())
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 2525), peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.proto.makeConnection(self.transport)
        # A frontend proves the node secret first (gateway/auth/node.py); then it may send and use XFORWARD.
        self.proto.dataReceived(b"EHLO fe.corp.example\r\n" + testing.node_login(testing.node_credential()))
        assert self.transport.value().endswith(b"235 2.7.0 Authentication successful\r\n")
        self.transport.clear()

    def send(self, data: bytes) -> list[str]:
        self.proto.dataReceived(data)
        out = self.transport.value().decode()
        self.transport.clear()
        return out.split("\r\n")[:-1]

    def deliver(self, body: bytes, xforward: bytes = b"XFORWARD ADDR=192.0.2.7 PORT=4000 HELO=scanner3 PROTO=ESMTP CONNECTOR=EXSERVER\\Default+20Frontend\r\n"):
        lines = self.send(b"EHLO fe.corp.example\r\n" + xforward + b"MAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n" + body + b".\r\n")
        return lines[-1]

    def stored(self) -> bytes:
        (env,) = self.scheduler.queued
        return self.stored_of(env)

    def stored_of(self, env) -> bytes:
        return body_bytes(self.store.body_path(env.queue_id), env.size)


RECEIVED = (
    "Received: from scanner3 ([192.0.2.7])\r\n"
    "\tby hub.corp.example (exgateway) with ESMTP\r\n"
    "\t(forwarded by gateway node FRONTEND1 [127.0.0.1])\r\n"
    '\t(connector "EXSERVER\\\\Default Frontend") id {id};\r\n'
    "\tWed, 18 Nov 2026 11:06:40 +0000\r\n"
)


def test_complete_message_gets_only_a_received_header(tmp_path):
    """Message-ID and Date present: the stored file is one Received header plus the exact bytes sent."""
    hub = Hub(tmp_path)
    body = b"Message-ID: <abc@dev.example>\r\nDate: Tue, 17 Nov 2026 10:00:00 +0000\r\nSubject: s\r\n\r\n\xe9t\xe9 8bit\r\n..dot\r\n"
    reply = hub.deliver(body)
    (env,) = hub.scheduler.queued
    assert reply == f"250 2.6.0 <abc@dev.example> [InternalId={env.internal_id}, Hostname=hub.corp.example] Queued mail for delivery"
    assert hub.stored() == RECEIVED.format(id=env.internal_id).encode() + body.replace(b"..dot", b".dot")
    assert (env.client_ip, env.helo, env.connector, env.sender) == ("192.0.2.7", "scanner3", "EXSERVER\\Default Frontend", "scan@corp.example")
    assert env.size == len(hub.stored())
    # The first delivery attempt gets the same bytes from memory, not from disk.
    assert hub.scheduler.bodies == [hub.stored()]


def test_missing_message_id_and_date_are_added(tmp_path):
    hub = Hub(tmp_path)
    body = b"Subject: no id\r\n\r\nx\r\n"
    reply = hub.deliver(body)
    (env,) = hub.scheduler.queued
    generated = f"<{env.internal_id}@hub.corp.example>"
    assert reply.startswith(f"250 2.6.0 {generated} [InternalId=")
    assert hub.stored() == (
        RECEIVED.format(id=env.internal_id) + f"Message-ID: {generated}\r\nDate: Wed, 18 Nov 2026 11:06:40 +0000\r\n"
    ).encode() + body


def test_body_without_headers_keeps_every_byte_as_body(tmp_path):
    """No Subject, first line plain text: a blank line separates our headers, nothing is lost."""
    hub = Hub(tmp_path)
    body = b"Printer 4 is out of toner.\r\nTray 2 empty.\r\n\r\nSecond paragraph\r\n"
    hub.deliver(body)
    stored = hub.stored()
    head, _, rest = stored.partition(b"\r\n\r\n")
    assert rest == body
    assert b"Message-ID: <" in head and b"Date: " in head


def test_body_starting_with_blank_line_gets_no_extra_blank(tmp_path):
    hub = Hub(tmp_path)
    body = b"\r\nonly body\r\n"
    hub.deliver(body)
    assert hub.stored().endswith(b"+0000\r\n" + body)
    assert b"\r\n\r\n\r\n" not in hub.stored()


def test_folded_message_id_is_found(tmp_path):
    hub = Hub(tmp_path)
    reply = hub.deliver(b"Message-ID:\r\n <folded@dev.example>\r\nDate: x\r\n\r\nb\r\n")
    assert "<folded@dev.example>" in reply
    assert hub.stored().count(b"Message-ID") == 1


def test_without_xforward_the_hub_names_its_own_client(tmp_path):
    hub = Hub(tmp_path)
    hub.deliver(b"Subject: s\r\n\r\nb\r\n", xforward=b"")
    assert hub.stored().startswith(
        b"Received: from fe.corp.example ([127.0.0.1])\r\n\tby hub.corp.example (exgateway) with ESMTP\r\n"
        b'\t(connector "EXSERVER\\\\Default") id '
    )


def test_no_route_refused_at_rcpt(tmp_path):
    """The hub may relay anywhere, but a recipient with no route is refused at RCPT, not bounced later."""
    hub = Hub(tmp_path)
    lines = hub.send(b"EHLO fe\r\nMAIL FROM:<a@corp.example>\r\nRCPT TO:<x@outside.example>\r\n")
    assert lines[-1] == "550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain"


def _files(hub) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in hub.store.directory.iterdir() if p.is_file()}


def test_aborted_data_leaves_no_file(tmp_path):
    hub = Hub(tmp_path)
    hub.send(b"EHLO fe\r\nMAIL FROM:<a@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\npartial")
    hub.proto.connectionLost(None)
    # Only the spare files made for the next messages remain, empty.
    assert _files(hub) and set(_files(hub).values()) == {0}


def test_messages_after_the_first_go_into_spare_files_and_an_abort_removes_its_own(tmp_path):
    hub = Hub(tmp_path)
    assert hub.deliver(b"Subject: one\r\n\r\nx\r\n").startswith("250 ")
    spares = sorted(name for name, size in _files(hub).items() if size == 0)
    assert len(spares) == SpareFiles.SPARES
    (first,) = hub.scheduler.queued
    assert hub.deliver(b"Subject: two\r\n\r\nx\r\n").startswith("250 ")
    second = hub.scheduler.queued[1]
    # The oldest spare took the second message; queue ids still increase.
    assert second.queue_id + ".eml" == spares[0] and int(second.queue_id) > int(first.queue_id)
    assert _files(hub)[spares[0]] > second.size
    hub.send(b"MAIL FROM:<a@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\npartial")
    hub.proto.connectionLost(None)
    assert spares[1] not in _files(hub)
    assert sorted(name for name, size in _files(hub).items() if size == 0) == spares[2:]


def test_ipv6_client_is_an_ipv6_literal_in_received(tmp_path):
    hub = Hub(tmp_path)
    hub.deliver(b"Subject: s\r\n\r\nb\r\n", xforward=b"XFORWARD ADDR=IPV6:2001:db8::7 HELO=v6host\r\n")
    assert hub.stored().startswith(b"Received: from v6host ([IPv6:2001:db8::7])\r\n")


def test_the_workers_of_a_node_take_turns_with_ids():
    """Each worker has a queue of its own; ids stay unique across them (worker N's are N modulo the count)."""
    from gateway.intake import InternalIds

    clock = Clock()
    clock.advance(1000.0)
    ids = [InternalIds(clock, worker=w, workers=3) for w in range(3)]
    taken = [i.next() for i in ids for _ in range(4)]
    assert len(set(taken)) == 12
    assert [[t % 3 for t in taken[k * 4:(k + 1) * 4]] for k in range(3)] == [[0] * 4, [1] * 4, [2] * 4]
    assert all(b > a for a, b in itertools.pairwise(taken[:4]))
    assert min(taken) >= 1_000_000_000


def test_the_receive_record_is_written_in_the_turn_after_the_250(tmp_path):
    """The client's next command does not wait for the tracking log: RECEIVE is written once the 250 is out."""
    hub = Hub(tmp_path)
    records = []

    class Tracking:
        def event(self, event_id, source, envelope, recipients, **fields):
            records.append((event_id, source, envelope.queue_id, recipients, fields))

    hub.handler.tracking = Tracking()
    reply = hub.deliver(b"Subject: s\r\n\r\nbody\r\n")
    assert reply.startswith("250 2.6.0 ")
    assert records == []
    hub.clock.advance(0)
    (env,) = hub.scheduler.queued
    assert records == [("RECEIVE", "SMTP", env.queue_id, ["alice@corp.example"], {"server_ip": "127.0.0.1"})]


def test_more_received_headers_than_max_hop_count_is_a_mail_loop(tmp_path):
    """Exchange's MaxHopCount (60): a 61st Received: field gets 554 5.4.6 and nothing is queued; 60 pass."""
    hub = Hub(tmp_path)
    hops = b"".join(b"Received: from hop%d by relay%d; Tue, 17 Nov 2026 10:00:00 +0000\r\n" % (i, i) for i in range(61))
    assert hub.deliver(hops + b"Subject: loop\r\n\r\nbody\r\n") == "554 5.4.6 Hop count exceeded - possible mail loop"
    assert hub.scheduler.queued == []
    assert hub.send(b"RSET\r\n") == ["250 2.0.0 Resetting"]
    sixty = hops.split(b"\r\n", 1)[1]
    assert hub.deliver(sixty + b"Subject: ok\r\n\r\nbody\r\n").startswith("250 2.6.0")


def test_max_hop_count_is_a_connector_setting():
    """A folded Received: field is one hop; the limit comes from the connector (max_hop_count)."""
    from gateway.headers import HeaderScan

    scan = HeaderScan()
    scan.feed(b"Received: from a\r\n\tby b; date\r\nReceived: from c\r\nSubject: x\r\n\r\n")
    assert scan.received == 2
    cfg = testing.config(receive_connectors=[
        {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "max_hop_count": 5},
    ], hub_pool={"hosts": ["127.0.0.1:2525"]})
    assert cfg.receive_connectors[0].max_hop_count == 5
    assert testing.config().receive_connectors[0].max_hop_count == 60
