"""
Hub failover in the frontend (gateway/proxy.py), over StringTransport and
task.Clock: a hub that drops the connection or defers mid-transaction is
marked down and the transaction is replayed on the next hub (MAIL, the
recipients accepted so far, the spooled body); the client sees one reply per
command, the replaying hub's.
"""

import dataclasses

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway import testing
from gateway.config import HostPort
from gateway.deliver.client import SMTPClient
from gateway.deliver.health import AddressHealth
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.proxy import ProxyHandler
from gateway.smtpd.protocol import ESMTPServer

EHLO = b"250-hub.corp.example\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n250 8BITMIME\r\n"
QUEUED_2 = b"250 2.6.0 <m@x> [InternalId=2, Hostname=hub2.corp.example] Queued mail for delivery"


class Hub:
    """One hub connection: an SMTPClient on a StringTransport, greeted and past EHLO."""

    def __init__(self, host: str, ehlo: bytes = EHLO) -> None:
        self.address = HostPort(host, 2525)
        self.client = SMTPClient("fe.corp.example", Clock(), timeout=30)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 2525))
        self.client.makeConnection(self.transport)
        self.client.dataReceived(b"220 hub ready\r\n" + ehlo)
        self.transport.clear()

    def sent(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def reply(self, *lines: bytes) -> None:
        self.client.dataReceived(b"".join(line + b"\r\n" for line in lines))

    def drop(self) -> None:
        """The hub's process dies: the connection is lost with replies outstanding."""
        self.client.connectionLost(Failure(ConnectionLost("Connection to the other side was lost")))


class HubPool:
    """The hub pool as the proxy uses it: hands out the given hubs in order; AddressHealth records who is down."""

    def __init__(self, *hubs: Hub, kept: int = 0) -> None:
        """The first `kept` hubs are handed as kept connections (reused), the rest as fresh ones."""
        self.hubs = list(hubs)
        self.kept = kept
        self.handed: list[Hub] = []
        self.asked: list[bool] = []
        self.health = AddressHealth(Clock())
        self.released: list = []
        self.discarded: list = []

    def acquire(self, reuse: bool = True):
        self.asked.append(reuse)
        hub = self.hubs.pop(0)
        self.handed.append(hub)
        return succeed((hub.client, len(self.handed) <= self.kept))

    def release(self, client) -> None:
        self.released.append(client)

    def discard(self, client) -> None:
        self.discarded.append(client)


class Frontend:
    """A client's session on the Default Frontend connector, whose transactions go to `pool`."""

    def __init__(self, pool: HubPool, tmp_path, **connector_changes) -> None:
        cfg = testing.config()
        connector = next(c for c in cfg.receive_connectors if c.name == "Default Frontend")
        connector = dataclasses.replace(connector, tarpit_interval=0.0, **connector_changes)
        self.clock = Clock()
        self.clock.advance(1_795_000_000)
        self.proto = ESMTPServer(
            connector, ProxyHandler(pool, tmp_path), SessionPolicy(AcceptedDomains(cfg.accepted_domains)), self.clock,
            node=testing.node_credential(),
        )
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
        self.proto.makeConnection(self.transport)
        self.read()
        assert self.send(b"EHLO scanner3\r\n")[-1] == "250 HELP"

    def read(self) -> list[str]:
        out = self.transport.value().decode()
        self.transport.clear()
        return out.split("\r\n")[:-1]

    def send(self, data: bytes) -> list[str]:
        self.proto.dataReceived(data)
        return self.read()


MAIL = b"MAIL FROM:<scanner@corp.example> SIZE=40\r\n"
RCPT = b"RCPT TO:<alice@corp.example>\r\n"


def envelope_accepted(hub: Hub, pipelined: bool = True) -> None:
    """
    The hub is asked MAIL and RCPT and accepts both: in one pipelined write
    (the transaction's first hub), or RCPT after MAIL's 250 (a replay on the
    next hub re-sends the accepted recipients one by one).
    """
    if pipelined:
        assert hub.sent() == MAIL + RCPT
        hub.reply(b"250 2.1.0 Sender OK", b"250 2.1.5 Recipient OK")
        return
    assert hub.sent() == MAIL
    hub.reply(b"250 2.1.0 Sender OK")
    assert hub.sent() == RCPT
    hub.reply(b"250 2.1.5 Recipient OK")
# A body line starting with a dot, dot-stuffed on the wire both ways (the client's and the hub's).
WIRE_BODY = b"Subject: scan\r\n\r\n..page 1\r\n.\r\n"


def test_a_hub_that_drops_after_the_body_is_failed_over_and_the_client_sees_one_reply(tmp_path):
    """Hub 1 dies before its final reply: marked down, hub 2 gets MAIL, RCPT, DATA and the same body; one 250 to the client, hub 2's."""
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    pool = HubPool(hub1, hub2)
    fe = Frontend(pool, tmp_path)
    assert fe.send(b"MAIL FROM:<scanner@corp.example> SIZE=40\r\n") == ["250 2.1.0 Sender OK"]
    assert fe.send(b"RCPT TO:<alice@corp.example>\r\n") == []  # waits for the hub
    envelope_accepted(hub1)
    assert fe.read() == ["250 2.1.5 Recipient OK"]
    assert fe.send(b"DATA\r\n") == ["354 Start mail input; end with <CRLF>.<CRLF>"]
    assert fe.send(WIRE_BODY) == []
    assert hub1.sent() == b"DATA\r\n"
    hub1.reply(b"354 go ahead")
    assert hub1.sent() == WIRE_BODY
    hub1.drop()

    assert pool.health.is_bad(hub1.address) and not pool.health.is_bad(hub2.address)
    assert pool.asked == [True, False]  # the replay takes a fresh connection
    assert fe.read() == []  # nothing to the client yet: the message is not accepted anywhere
    envelope_accepted(hub2, pipelined=False)
    assert hub2.sent() == b"DATA\r\n"
    hub2.reply(b"354 go ahead")
    assert hub2.sent() == WIRE_BODY
    hub2.reply(QUEUED_2)
    assert fe.read() == [QUEUED_2.decode()]
    assert pool.discarded == [hub1.client] and pool.released == [hub2.client]


def test_a_hub_that_drops_before_answering_rcpt_is_failed_over_at_rcpt(tmp_path):
    """Hub 1 accepts MAIL and dies with RCPT unanswered: hub 2 gets MAIL and RCPT; the client sees one RCPT reply."""
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    pool = HubPool(hub1, hub2)
    fe = Frontend(pool, tmp_path)
    fe.send(b"MAIL FROM:<scanner@corp.example> SIZE=40\r\n")
    assert fe.send(b"RCPT TO:<alice@corp.example>\r\n") == []
    assert hub1.sent() == MAIL + RCPT
    hub1.reply(b"250 2.1.0 Sender OK")
    hub1.drop()
    assert fe.read() == []
    envelope_accepted(hub2, pipelined=False)
    assert fe.read() == ["250 2.1.5 Recipient OK"]
    assert pool.health.is_bad(hub1.address)


def test_a_second_recipient_replays_the_first_on_the_next_hub(tmp_path):
    """Hub 1 accepted alice, then dies at bob's RCPT: hub 2 gets MAIL, alice again, then bob; the client sees bob's reply once."""
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    pool = HubPool(hub1, hub2)
    fe = Frontend(pool, tmp_path)
    fe.send(b"MAIL FROM:<scanner@corp.example> SIZE=40\r\n")
    fe.send(b"RCPT TO:<alice@corp.example>\r\n")
    envelope_accepted(hub1)
    assert fe.read() == ["250 2.1.5 Recipient OK"]
    assert fe.send(b"RCPT TO:<bob@corp.example>\r\n") == []
    assert hub1.sent() == b"RCPT TO:<bob@corp.example>\r\n"
    hub1.drop()
    envelope_accepted(hub2, pipelined=False)
    assert hub2.sent() == b"RCPT TO:<bob@corp.example>\r\n"
    assert fe.read() == []
    hub2.reply(b"250 2.1.5 Recipient OK")
    assert fe.read() == ["250 2.1.5 Recipient OK"]


@pytest.mark.parametrize("replies_before_drop", [0, 1])
def test_when_every_hub_tried_fails_the_client_gets_one_451_and_may_retry(tmp_path, replies_before_drop):
    """Three hubs die in turn, at MAIL or at RCPT (the first and MAX_FAILOVERS more): one 451 4.4.0 to the client's RCPT, the session goes on."""
    hubs = [Hub(f"192.0.2.{10 + i}") for i in range(3)]
    pool = HubPool(*hubs)
    fe = Frontend(pool, tmp_path)
    fe.send(b"MAIL FROM:<scanner@corp.example> SIZE=40\r\n")
    fe.send(b"RCPT TO:<alice@corp.example>\r\n")
    for n, hub in enumerate(hubs):
        # The first hub has RCPT pipelined behind MAIL; a replay sends it after MAIL's 250.
        assert hub.sent() == (MAIL + RCPT if n == 0 else MAIL)
        if replies_before_drop:
            hub.reply(b"250 2.1.0 Sender OK")
            if n > 0:
                assert hub.sent() == RCPT
        hub.drop()
    assert fe.read() == ["451 4.4.0 Temporary server error. Please try again later"]
    assert all(pool.health.is_bad(h.address) for h in hubs[:2])
    assert fe.send(b"NOOP\r\n") == ["250 2.0.0 OK"]


@pytest.mark.parametrize("odd", [b"220 hub.corp.example ready", b"252 Cannot VRFY user", b"354 Go ahead"])
@pytest.mark.parametrize("stage", ["MAIL", "RCPT"])
def test_a_hub_out_of_step_in_the_envelope_is_failed_over_and_its_reply_never_reaches_the_client(tmp_path, stage, odd):
    """A reply that answers nothing (not 2xx, 4xx or 5xx where the command awaits one): that hub is dropped, the next one is asked."""
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    pool = HubPool(hub1, hub2)
    fe = Frontend(pool, tmp_path)
    assert fe.send(MAIL + RCPT) == ["250 2.1.0 Sender OK"]
    assert hub1.sent() == MAIL + RCPT
    if stage == "RCPT":
        hub1.reply(b"250 2.1.0 Sender OK")
    hub1.reply(odd)
    assert pool.health.is_bad(hub1.address) and pool.discarded == [hub1.client]
    envelope_accepted(hub2, pipelined=False)
    assert fe.read() == ["250 2.1.5 Recipient OK"]


@pytest.mark.parametrize("stage, odd", [
    ("the end of data", b"451 4.3.0 Temporary server error. Please try again later"),
    # A hub out of step: a reply that answers nothing.
    ("DATA", b"250 2.0.0 OK"),
    ("DATA", b"220 hub.corp.example ready"),
    ("the end of data", b"354 Go ahead"),
    ("the end of data", b"220 hub.corp.example ready"),
])
def test_a_hub_that_defers_or_is_out_of_step_at_the_body_is_failed_over_and_the_client_never_gets_its_reply(tmp_path, stage, odd):
    """
    A 451 after the body, or a reply that answers nothing (a 250 to DATA:
    the body never sent; a 354 after it): hub 1 marked down, the message
    replayed on hub 2; the client sees hub 2's 250 only.
    """
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    pool = HubPool(hub1, hub2)
    fe = Frontend(pool, tmp_path)
    fe.send(MAIL + RCPT)
    envelope_accepted(hub1)
    assert fe.read() == ["250 2.1.5 Recipient OK"]
    fe.send(b"DATA\r\n")
    assert fe.send(WIRE_BODY) == []
    assert hub1.sent() == b"DATA\r\n"
    if stage == "the end of data":
        hub1.reply(b"354 go ahead")
        assert hub1.sent() == WIRE_BODY
    hub1.reply(odd)
    assert fe.read() == []
    assert pool.health.is_bad(hub1.address) and pool.discarded == [hub1.client]
    envelope_accepted(hub2, pipelined=False)
    assert hub2.sent() == b"DATA\r\n"
    hub2.reply(b"354 go ahead")
    assert hub2.sent() == WIRE_BODY
    hub2.reply(QUEUED_2)
    assert fe.read() == [QUEUED_2.decode()]


@pytest.mark.parametrize("refusal", [b"451 4.3.0 Temporary server error. Please try again later", b"421 4.3.2 Service not available"])
def test_a_hub_that_defers_mail_is_failed_over_and_the_pipelined_rcpts_reply_is_never_the_clients(tmp_path, refusal):
    """
    Hub 1 (a kept connection) defers MAIL and answers the RCPT pipelined
    behind it with a 503, or closes before it (a 421): marked down, hub 2
    gets the transaction; the client sees hub 2's RCPT reply only. A kept
    connection that answered is not one the hub had closed: no fresh retry on it.
    """
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    pool = HubPool(hub1, hub2, kept=1)
    fe = Frontend(pool, tmp_path)
    assert fe.send(MAIL + RCPT) == ["250 2.1.0 Sender OK"]
    assert hub1.sent() == MAIL + RCPT
    hub1.reply(refusal)
    assert fe.read() == [] and pool.released == []  # the 503 to RCPT is still to come, or the connection's end
    if refusal.startswith(b"421"):
        hub1.drop()
    else:
        hub1.reply(b"503 5.5.1 Bad sequence of commands")
    assert pool.health.is_bad(hub1.address) and pool.released == [hub1.client]
    assert pool.asked == [True, False]
    envelope_accepted(hub2, pipelined=False)
    assert fe.read() == ["250 2.1.5 Recipient OK"]


def test_a_kept_connection_the_hub_has_closed_is_retried_fresh_with_rcpt_pipelined(tmp_path):
    """The kept connection is gone when MAIL is sent: one fresh connection, MAIL and RCPT in one write, the hub not marked down."""
    hub1, hub2 = Hub("192.0.2.10"), Hub("192.0.2.11")
    hub1.drop()
    pool = HubPool(hub1, hub2, kept=1)
    fe = Frontend(pool, tmp_path)
    assert fe.send(MAIL + RCPT) == ["250 2.1.0 Sender OK"]
    assert pool.asked == [True, False] and pool.discarded == [hub1.client]
    envelope_accepted(hub2)
    assert fe.read() == ["250 2.1.5 Recipient OK"]
    assert not pool.health.is_bad(hub1.address)


def test_a_hub_that_refuses_xforward_gets_no_failover_and_the_client_a_451(tmp_path):
    """XFORWARD refused is the admin's problem (the hub connector does not trust this frontend): the client gets a 451, no other hub is tried."""
    hub1 = Hub("192.0.2.10", ehlo=b"250-hub.corp.example\r\n250-PIPELINING\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n250 SIZE 37748736\r\n")
    pool = HubPool(hub1)
    fe = Frontend(pool, tmp_path)
    assert fe.send(MAIL + RCPT) == ["250 2.1.0 Sender OK"]
    sent = hub1.sent()
    assert sent.startswith(b"XFORWARD ADDR=192.0.2.1 PROTO=ESMTP HELO=scanner3\r\n") and sent.endswith(MAIL + RCPT)
    hub1.reply(b"550 5.7.1 Not authorized", b"250 2.1.0 Sender OK", b"250 2.1.5 Recipient OK")
    assert fe.read() == ["451 4.4.0 Temporary server error. Please try again later"]
    assert pool.discarded == [hub1.client] and pool.released == [] and pool.asked == [True]
    assert not pool.health.is_bad(hub1.address)
