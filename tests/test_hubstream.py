"""
The frontend streams a large body on to the hub while the client sends it
(gateway/hubstream.py, gateway/proxy.py), over StringTransport and
task.Clock: non-LAST BDAT chunks as data arrives, no more in flight than
IN_FLIGHT, a small message still one BDAT LAST; a hub that refuses a chunk
or is lost mid-stream, a client that goes away and a message the frontend
refuses at its end never leave a message committed on a hub, and failover
replays the whole body from the spool.
"""

import pytest

from gateway.hubstream import CHUNK_MAX, IN_FLIGHT, STREAM_FROM
from gateway.proxy import FrontendTransaction
from tests.test_proxy_failover import QUEUED_2, Frontend, Hub, HubPool, envelope_accepted

STREAMING = b"250-hub.corp.example\r\n250-PIPELINING\r\n250-SIZE 37748736\r\n250-8BITMIME\r\n250 CHUNKING\r\n"
QUEUED_1 = b"250 2.6.0 <m@x> [InternalId=1, Hostname=hub1.corp.example] Queued mail for delivery"
PIECE = 64 * 1024


def body(size: int) -> bytes:
    """A message of about `size` octets: a header, then numbered lines (none starts with a dot)."""
    head = b"Subject: scan\r\n\r\n"
    count = (size - len(head)) // 115 + 1
    return head + b"".join(b"line %07d " % n + b"x" * 100 + b"\r\n" for n in range(count))


def parse(raw: bytes) -> list:
    """What a hub was sent: command lines (bytes) and BDAT chunks as (size, last, octets)."""
    out: list = []
    while raw:
        line, _, raw = raw.partition(b"\r\n")
        words = line.split()
        if words[0] == b"BDAT":
            size = int(words[1])
            out.append((size, len(words) == 3, raw[:size]))
            raw = raw[size:]
        else:
            out.append(line)
    return out


def pull(hub: Hub) -> list:
    """Everything the hub was sent since the last look, a producer-streamed body included."""
    # A body's tail is a pull producer (BodyProducer), driven here as the reactor would; a stream in progress is a push producer.
    while hub.transport.producer is not None and not hub.transport.streaming:
        hub.transport.producer.resumeProducing()
    return parse(hub.sent())


def started(pool: HubPool, tmp_path, hub: Hub, **changes) -> Frontend:
    """A client's session past MAIL, RCPT (the hub accepted both) and DATA."""
    fe = Frontend(pool, tmp_path, **changes)
    fe.send(b"MAIL FROM:<scanner@corp.example> SIZE=40\r\nRCPT TO:<alice@corp.example>\r\n")
    envelope_accepted(hub)
    assert fe.read() == ["250 2.1.5 Recipient OK"]
    assert fe.send(b"DATA\r\n") == ["354 Start mail input; end with <CRLF>.<CRLF>"]
    return fe


def frontend_transaction(fe: Frontend):
    """The session's FrontendTransaction, behind the filters (header firewall) that wrap it."""
    txn = fe.proto.mail.transaction
    while not isinstance(txn, FrontendTransaction):
        txn = txn.transaction
    return txn


def feed(fe: Frontend, data: bytes) -> None:
    for i in range(0, len(data), PIECE):
        fe.proto.dataReceived(data[i : i + PIECE])


def test_a_large_body_goes_on_in_chunks_as_it_arrives_and_the_end_sends_only_the_tail(tmp_path):
    """Past STREAM_FROM a BDAT chunk goes out before the client's end of data; the end adds the tail as BDAT LAST; the hub gets the body byte-exact."""
    hub = Hub("192.0.2.10", STREAMING)
    pool = HubPool(hub)
    fe = started(pool, tmp_path, hub)
    message = body(700 * 1024)
    feed(fe, message[: 5 * PIECE])
    [(size, last, octets)] = pull(hub)
    assert not last and size >= STREAM_FROM and octets == message[:size]
    assert fe.read() == []
    hub.reply(b"250 2.0.0 %d octets received" % size)
    feed(fe, message[5 * PIECE :])
    sent = pull(hub)
    assert all(not last for _, last, _ in sent)
    fe.proto.dataReceived(b".\r\n")
    assert fe.read() == []
    # The LAST chunk waits for the streamed chunks' 250s (RFC 3030: none after a refused one).
    assert pull(hub) == []
    for size, _, _ in sent:
        hub.reply(b"250 2.0.0 %d octets received" % size)
    [(tail, last, rest)] = pull(hub)
    assert last and tail < STREAM_FROM + PIECE
    chunks = [octets, *(o for _, _, o in sent), rest]
    assert b"".join(chunks) == message
    hub.reply(QUEUED_1)
    assert fe.read() == [QUEUED_1.decode()]
    assert pool.released == [hub.client] and pool.discarded == []


def test_no_more_than_in_flight_octets_wait_for_the_hub_and_the_rest_follows_from_the_spool(tmp_path):
    """A hub that does not answer gets at most IN_FLIGHT octets; as it answers, the rest goes on from the spool's offset; byte-exact."""
    hub = Hub("192.0.2.10", STREAMING)
    fe = started(HubPool(hub), tmp_path, hub)
    message = body(4 * 1024 * 1024)
    feed(fe, message)
    sent = pull(hub)
    assert 0 < sum(size for size, _, _ in sent) <= IN_FLIGHT
    assert all(size <= CHUNK_MAX for size, _, _ in sent)
    # The octets not sent wait in the spool, not in memory.
    assert frontend_transaction(fe).stream._pending is None
    got = [o for _, _, o in sent]
    while sent:
        size, _, _ = sent.pop(0)
        hub.reply(b"250 2.0.0 %d octets received" % size)
        more = pull(hub)
        got += [o for _, _, o in more]
        sent += more
        assert sum(s for s, _, _ in sent) <= IN_FLIGHT
    fe.proto.dataReceived(b".\r\n")
    [(_, last, rest)] = pull(hub)
    assert last
    assert b"".join([*got, rest]) == message
    hub.reply(QUEUED_1)
    assert fe.read() == [QUEUED_1.decode()]


def test_a_small_message_is_still_one_bdat_last(tmp_path):
    """5 KB: nothing streams; the end of data sends exactly one BDAT <n> LAST with the whole body."""
    hub = Hub("192.0.2.10", STREAMING)
    fe = started(HubPool(hub), tmp_path, hub)
    message = body(5 * 1024)
    fe.proto.dataReceived(message)
    assert hub.sent() == b""
    fe.proto.dataReceived(b".\r\n")
    assert hub.sent() == b"BDAT %d LAST\r\n" % len(message) + message
    hub.reply(QUEUED_1)
    assert fe.read() == [QUEUED_1.decode()]


def test_a_chunk_the_hub_refuses_ends_the_stream_and_the_client_gets_the_refusal(tmp_path):
    """554 to a chunk: no more chunks, no LAST; at the end the client gets the hub's 554 and the hub's transaction is reset."""
    hub = Hub("192.0.2.10", STREAMING)
    pool = HubPool(hub)
    fe = started(pool, tmp_path, hub)
    message = body(1024 * 1024)
    feed(fe, message[: 5 * PIECE])
    assert len(pull(hub)) == 1
    hub.reply(b"554 5.6.0 Invalid message content")
    feed(fe, message[5 * PIECE :])
    fe.proto.dataReceived(b".\r\n")
    assert pull(hub) == [b"RSET"]
    hub.reply(b"250 2.0.0 Resetting")
    assert fe.read() == ["554 5.6.0 Invalid message content"]
    assert pool.released == [hub.client] and not pool.health.is_bad(hub.address)
    assert fe.send(b"NOOP\r\n") == ["250 2.0.0 OK"]


@pytest.mark.parametrize("reply", [
    b"452 4.3.1 Insufficient system resources",
    # A hub out of step: a 2xx other than 250 or a 3xx answers nothing, and is never the client's final reply.
    b"251 2.1.5 Will forward",
    b"220 hub.corp.example ready",
    b"354 Go ahead",
])
def test_a_chunk_the_hub_defers_fails_over_and_the_next_hub_gets_the_whole_body(tmp_path, reply):
    """452 (or no answer) to a chunk: hub 1 marked down; at the end hub 2 gets MAIL, RCPT and the whole body from the spool as one BDAT LAST."""
    hub1, hub2 = Hub("192.0.2.10", STREAMING), Hub("192.0.2.11", STREAMING)
    pool = HubPool(hub1, hub2)
    fe = started(pool, tmp_path, hub1)
    message = body(1024 * 1024)
    feed(fe, message[: 5 * PIECE])
    assert len(pull(hub1)) == 1
    hub1.reply(reply)
    feed(fe, message[5 * PIECE :])
    assert pull(hub1) == []
    fe.proto.dataReceived(b".\r\n")
    assert pool.health.is_bad(hub1.address) and pool.discarded == [hub1.client]
    envelope_accepted(hub2, pipelined=False)
    assert pull(hub2) == [(len(message), True, message)]
    hub2.reply(QUEUED_2)
    assert fe.read() == [QUEUED_2.decode()]


def test_a_hub_lost_mid_stream_is_failed_over_and_the_next_hub_gets_the_body_byte_exact(tmp_path):
    """The hub dies with chunks unanswered: nothing more goes to it; at the end hub 2 gets the replayed envelope and the spooled body."""
    hub1, hub2 = Hub("192.0.2.10", STREAMING), Hub("192.0.2.11", STREAMING)
    pool = HubPool(hub1, hub2)
    fe = started(pool, tmp_path, hub1)
    message = body(2 * 1024 * 1024)
    feed(fe, message[: 1024 * 1024])
    assert pull(hub1)
    hub1.drop()
    feed(fe, message[1024 * 1024 :])
    assert fe.read() == []
    fe.proto.dataReceived(b".\r\n")
    assert pool.health.is_bad(hub1.address) and pool.asked == [True, False]
    envelope_accepted(hub2, pipelined=False)
    assert pull(hub2) == [(len(message), True, message)]
    hub2.reply(QUEUED_2)
    assert fe.read() == [QUEUED_2.decode()]


def test_a_client_that_goes_away_mid_stream_leaves_the_hub_nothing_to_commit(tmp_path):
    """The client's connection ends with chunks unanswered: the hub connection is dropped, no LAST was ever sent."""
    hub = Hub("192.0.2.10", STREAMING)
    pool = HubPool(hub)
    fe = started(pool, tmp_path, hub)
    feed(fe, body(1024 * 1024))
    sent = pull(hub)
    assert sent and all(not last for _, last, _ in sent)
    fe.proto.connectionLost(None)
    assert pool.discarded == [hub.client] and hub.transport.disconnecting
    assert hub.sent() == b""


def test_a_message_the_frontend_refuses_at_its_end_is_reset_on_the_hub(tmp_path):
    """Over the frontend's size limit: the client gets 552 at the end, the hub never a LAST, only RSET (its chunks all answered)."""
    hub = Hub("192.0.2.10", STREAMING)
    pool = HubPool(hub)
    fe = started(pool, tmp_path, hub, max_message_size=900 * 1024)
    feed(fe, body(1024 * 1024))
    for size, last, _ in pull(hub):
        assert not last
        hub.reply(b"250 2.0.0 %d octets received" % size)
    assert all(not last for _, last, _ in pull(hub))
    fe.proto.dataReceived(b".\r\n")
    assert fe.read()[0].startswith("552 5.3.4")
    assert pull(hub) == [b"RSET"]
    hub.reply(b"250 2.0.0 Resetting")
    assert pool.released == [hub.client] and pool.discarded == []


def test_a_hub_without_chunking_gets_the_body_with_data_at_the_end(tmp_path):
    """A DATA-only hub: nothing is sent before the client's end of data (today's behaviour)."""
    hub = Hub("192.0.2.10")
    fe = started(HubPool(hub), tmp_path, hub)
    message = body(1024 * 1024)
    feed(fe, message)
    assert hub.sent() == b""
    fe.proto.dataReceived(b".\r\n")
    assert hub.sent() == b"DATA\r\n"



def test_a_full_transport_buffer_pauses_the_stream_and_the_tail_follows_from_the_spool(tmp_path):
    """The stream is the hub connection's producer: paused (a hub that stops reading, or answers what it has not read) it sends nothing; the rest goes at the end, byte-exact."""
    hub = Hub("192.0.2.10", STREAMING)
    fe = started(HubPool(hub), tmp_path, hub)
    message = body(2 * 1024 * 1024)
    feed(fe, message[: 5 * PIECE])
    first = pull(hub)
    assert len(first) == 1 and hub.transport.producer is frontend_transaction(fe).stream
    hub.transport.producer.pauseProducing()
    hub.reply(b"250 2.0.0 %d octets received" % first[0][0])
    feed(fe, message[5 * PIECE :])
    assert pull(hub) == []
    fe.proto.dataReceived(b".\r\n")
    # The stream gave the connection up; the tail (over SMALL_BODY) goes with a producer of its own.
    [(size, last, rest)] = pull(hub)
    assert last and size > 1024 * 1024
    assert first[0][2] + rest == message
    hub.reply(QUEUED_1)
    assert fe.read() == [QUEUED_1.decode()]
    assert hub.transport.producer is None


def test_a_resumed_stream_sends_what_waited(tmp_path):
    """Paused with chunks due, the transport's resumeProducing sends them (from the spool's offset)."""
    hub = Hub("192.0.2.10", STREAMING)
    fe = started(HubPool(hub), tmp_path, hub)
    message = body(1024 * 1024)
    feed(fe, message[: 5 * PIECE])
    [(size, _, octets)] = pull(hub)
    hub.reply(b"250 2.0.0 %d octets received" % size)
    hub.transport.producer.pauseProducing()
    feed(fe, message[5 * PIECE : 12 * PIECE])
    assert pull(hub) == []
    hub.transport.producer.resumeProducing()
    more = pull(hub)
    assert more and octets + b"".join(o for _, _, o in more) == message[: size + sum(s for s, _, _ in more)]
