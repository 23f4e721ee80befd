"""
The delivery client's wait per protocol phase (gateway/deliver/timeouts.py),
over StringTransport and task.Clock: a next hop that accepts TCP and never
greets, or stops answering at one phase, is given up after that phase's
timeout (Postfix's smtp_*_timeout), not held for the longest of them.
"""

import io

import pytest
from twisted.internet.error import ConnectionLost, TimeoutError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from gateway.deliver.client import SMALL_BODY, SMTPClient
from gateway.deliver.timeouts import PhaseTimeouts

PHASES = PhaseTimeouts(greeting=30, helo=20, mail=15, rcpt=12, data_init=10, data_done=60, other=5, data_xfer=8)


def client_for(timeouts=PHASES):
    clock = Clock()
    client = SMTPClient("hub.corp.example", clock, timeouts=timeouts)
    transport = StringTransport()
    client.makeConnection(transport)
    return client, transport, clock


def greeted(pipelining=True):
    client, transport, clock = client_for()
    client.dataReceived(b"220 hop ready\r\n")
    client.dataReceived(b"250-hop\r\n250 PIPELINING\r\n" if pipelining else b"250 hop\r\n")
    transport.clear()
    return client, transport, clock


def test_a_hop_that_never_greets_is_given_up_after_the_greeting_timeout():
    client, transport, clock = client_for()
    failures = []
    client.ready.addErrback(failures.append)
    clock.advance(29.9)
    assert not failures and not transport.disconnecting
    clock.advance(0.1)
    assert failures[0].check(TimeoutError)
    assert transport.disconnecting


def test_ehlo_waits_the_helo_timeout():
    client, transport, clock = client_for()
    failures = []
    client.ready.addErrback(failures.append)
    clock.advance(29)
    client.dataReceived(b"220 hop ready\r\n")
    assert transport.value() == b"EHLO hub.corp.example\r\n"
    clock.advance(19.9)
    assert not failures
    clock.advance(0.1)
    assert failures[0].check(TimeoutError)


@pytest.mark.parametrize("line, seconds", [("MAIL FROM:<s@x>", 15), ("RCPT TO:<a@x>", 12), ("DATA", 10), ("RSET", 5), ("QUIT", 5)])
def test_each_command_waits_its_phase_timeout(line, seconds):
    client, transport, clock = greeted()
    failures = []
    client.command(line).addErrback(failures.append)
    clock.advance(seconds - 0.5)
    assert not failures
    clock.advance(0.5)
    assert failures[0].check(TimeoutError) and transport.disconnecting


def test_a_pipelined_group_waits_each_reply_for_its_own_command():
    """MAIL, RCPT, DATA in one write: after the MAIL reply the clock restarts at the RCPT timeout, then at DATA's."""
    client, _transport, clock = greeted()
    failures = []
    client.commands(["MAIL FROM:<s@x>", "RCPT TO:<a@x>", "DATA"]).addErrback(failures.append)
    clock.advance(14)
    client.dataReceived(b"250 ok\r\n")
    clock.advance(11)
    client.dataReceived(b"250 ok\r\n")
    clock.advance(9.9)
    assert not failures
    clock.advance(0.1)
    assert failures[0].check(TimeoutError)


def test_the_end_of_data_waits_the_longer_data_done_timeout():
    client, _transport, clock = greeted()
    failures, replies = [], []
    client.command("DATA").addCallback(replies.append)
    client.dataReceived(b"354 go\r\n")
    client.send_body(io.BytesIO(b"Subject: t\r\n\r\nbody\r\n"), 20).addCallbacks(replies.append, failures.append)
    clock.advance(59)
    assert not failures and len(replies) == 1
    client.dataReceived(b"250 2.0.0 queued\r\n")
    assert replies[1].code == 250 and clock.getDelayedCalls() == []


def test_a_big_body_the_hop_stops_taking_times_out_after_the_transfer_timeout():
    """Streamed with a producer: each chunk the hop takes pushes the timer back; a stall ends it after data_xfer."""
    client, transport, clock = greeted()
    failures = []
    client.command("DATA")
    client.dataReceived(b"354 go\r\n")
    body = io.BytesIO(b"x" * (SMALL_BODY * 2) + b"\r\n")
    client.send_body(body, SMALL_BODY * 2 + 2).addErrback(failures.append)
    producer = transport.producer
    producer.resumeProducing()
    clock.advance(7)
    producer.resumeProducing()
    clock.advance(7)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    # What the aborted transport does next: stop the producer, lose the connection; the body's Deferred fails.
    producer.stopProducing()
    client.connectionLost(Failure(ConnectionLost()))
    assert failures and clock.getDelayedCalls() == []


def test_one_reply_timeout_for_every_phase_when_no_phases_are_given():
    """The hub hand-off's pool gives one reply timeout: every phase waits that long."""
    clock = Clock()
    client = SMTPClient("fe.corp.example", clock, timeout=42)
    client.makeConnection(StringTransport())
    failures = []
    client.ready.addErrback(failures.append)
    clock.advance(41.9)
    assert not failures
    clock.advance(0.1)
    assert failures


def test_for_command_names_each_phase():
    t = PhaseTimeouts()
    assert [t.for_command(c) for c in ("EHLO x", "STARTTLS", "AUTH PLAIN", "MAIL FROM:<>", "RCPT TO:<a@b>", "DATA", "QUIT")] == [
        300, 300, 300, 300, 300, 120, 300,
    ]
    assert (t.greeting, t.data_done, t.data_xfer) == (300, 600, 180)
