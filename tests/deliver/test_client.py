"""The outbound client over StringTransport: replies in order, exact dot-stuffing, timeouts."""

import base64
import io

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.deliver.client import SMALL_BODY, SMTPClient
from gateway.deliver.smtp import SMTPDelivery
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.entry import StoredBody


def connected():
    clock = Clock()
    client = SMTPClient("fe.corp.example", clock, timeout=30)
    transport = StringTransport()
    client.makeConnection(transport)
    ready = []
    client.ready.addCallback(ready.append)
    client.dataReceived(b"220 hub ready\r\n")
    assert transport.value() == b"EHLO fe.corp.example\r\n"
    transport.clear()
    client.dataReceived(b"250-hub Hello\r\n250-PIPELINING\r\n250-SIZE 100\r\n250 XFORWARD ADDR HELO\r\n")
    assert ready == [client]
    return client, transport, clock


def test_a_transaction_goes_out_in_one_send_per_group_without_waiting_for_the_reactor(tmp_path):
    """The next hop gets the pipelined MAIL/RCPT/DATA in one send, then body and end in one more, each at once."""
    client = SMTPClient("hub.corp.example", Clock(), timeout=30)
    transport = testing.SocketLikeTransport()
    client.makeConnection(transport)
    client.dataReceived(b"220 sink ready\r\n")
    assert transport.sends == [b"EHLO hub.corp.example\r\n"]
    client.dataReceived(b"250-sink\r\n250 PIPELINING\r\n")
    body = b"Subject: t\r\n\r\n.dot\r\n"
    envelope = Envelope("7", 7, "<m@x>", "s@x.example", (Recipient("a@corp.example"),), 0.0, len(body))
    delivery = SMTPDelivery(None, (), "hub.corp.example", pool=object())
    results = []
    delivery._transaction(client, envelope, ["a@corp.example"], StoredBody(tmp_path / "7.eml", body)).addCallback(results.append)
    assert transport.sends[1:] == [b"MAIL FROM:<s@x.example>\r\nRCPT TO:<a@corp.example>\r\nDATA\r\n"]
    client.dataReceived(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert transport.sends[2:] == [b"Subject: t\r\n\r\n..dot\r\n.\r\n"]
    client.dataReceived(b"250 2.0.0 queued as 1\r\n")
    assert results == [{"a@corp.example": (RecipientState.DELIVERED, "250 2.0.0 queued as 1")}]
    assert transport.sends[3:] == [] and transport.value() == b""


def test_extensions_parsed():
    client, _, _ = connected()
    assert client.extensions == {"PIPELINING": "", "SIZE": "100", "XFORWARD": "ADDR HELO"}
    assert client.pipelining


def test_pipelined_replies_match_commands_in_order():
    client, transport, _ = connected()
    got = []
    for line in ("MAIL FROM:<a@b>", "RCPT TO:<c@d>", "RCPT TO:<e@f>"):
        client.command(line).addCallback(lambda r: got.append(str(r)))
    assert transport.value() == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
    client.dataReceived(b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n550 5.7.54 SMTP; Unable to relay\r\n")
    assert got == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK", "550 5.7.54 SMTP; Unable to relay"]



def test_a_pipelined_group_goes_in_one_write_and_fires_once_with_its_replies_in_order():
    client, transport, _ = connected()
    got = []
    client.commands(["MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"]).addCallback(lambda rs: got.append([str(r) for r in rs]))
    after = []
    client.command("NOOP").addCallback(lambda r: after.append(str(r)))
    assert transport.value() == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nNOOP\r\n"
    client.dataReceived(b"250 2.1.0 Sender OK\r\n550 5.7.54 SMTP; Unable to relay\r\n")
    assert got == []
    client.dataReceived(b"354 Start mail input\r\n250 2.0.0 OK\r\n")
    assert got == [["250 2.1.0 Sender OK", "550 5.7.54 SMTP; Unable to relay", "354 Start mail input"]]
    assert after == ["250 2.0.0 OK"]


def test_a_pipelined_group_fails_once_when_the_connection_goes():
    client, transport, _ = connected()
    failures = []
    client.commands(["MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"]).addErrback(failures.append)
    client.dataReceived(b"250 2.1.0 Sender OK\r\n")
    client.connectionLost(None)
    assert len(failures) == 1 and failures[0].check(ConnectionLost)
    lost = []
    client.commands(["RSET"]).addErrback(lost.append)
    assert len(lost) == 1 and transport.value().endswith(b"DATA\r\n")

def test_small_body_is_stuffed_and_terminated():
    client, transport, _ = connected()
    final = []
    client.send_body(io.BytesIO(b".x\r\n..\r\n.\r\n"), 12).addCallback(final.append)
    assert transport.value() == b"..x\r\n...\r\n..\r\n.\r\n"
    client.dataReceived(b"250 2.6.0 queued\r\n")
    assert str(final[0]) == "250 2.6.0 queued"


def test_body_without_final_crlf_gets_one():
    client, transport, _ = connected()
    client.send_body(io.BytesIO(b"no newline"), 10)
    assert transport.value() == b"no newline\r\n.\r\n"


def test_large_body_streams_through_producer_with_exact_stuffing():
    """Past SMALL_BODY the body is pulled in chunks; dots at chunk boundaries are still stuffed."""
    client, transport, _ = connected()
    line = b"." + b"x" * 1021 + b"\r\n"  # 1024-byte lines, each starting with a dot
    body = line * (SMALL_BODY // len(line) + 100)
    final = []
    client.send_body(io.BytesIO(body), len(body)).addCallback(final.append)
    while transport.producer is not None:
        transport.producer.resumeProducing()
    assert transport.value() == body.replace(b"\r\n.", b"\r\n..").replace(b".x", b"..x", 1) + b".\r\n"
    client.dataReceived(b"250 ok\r\n")
    assert final[0].code == 250


def test_no_reply_times_out_and_fails_the_command():
    client, _transport, clock = connected()
    failures = []
    client.command("MAIL FROM:<a@b>").addErrback(failures.append)
    clock.advance(31)
    assert failures and "no reply" in failures[0].getErrorMessage()


def test_connection_lost_fails_waiting_commands():
    client, _transport, _ = connected()
    failures = []
    client.command("NOOP").addErrback(failures.append)
    client.connectionLost(None)
    assert len(failures) == 1 and not client.connected


def test_bdat_sends_the_body_unstuffed_in_one_chunk():
    """CHUNKING: BDAT <size> LAST then the exact bytes, no 354 wait and no dot-stuffing."""
    client, transport, _ = connected()
    final = []
    body = b".x\r\n..\r\n"
    client.send_bdat(io.BytesIO(body), len(body)).addCallback(final.append)
    assert transport.value() == b"BDAT 8 LAST\r\n.x\r\n..\r\n"
    client.dataReceived(b"250 2.6.0 queued\r\n")
    assert str(final[0]) == "250 2.6.0 queued"


def test_large_bdat_streams_raw():
    client, transport, _ = connected()
    body = (b"." + b"y" * 1021 + b"\r\n") * (SMALL_BODY // 1024 + 50)
    client.send_bdat(io.BytesIO(body), len(body))
    while transport.producer is not None:
        transport.producer.resumeProducing()
    assert transport.value() == b"BDAT %d LAST\r\n" % len(body) + body


def test_commands_on_a_lost_connection_fail_at_once():
    """A kept connection the server has closed fails the next command immediately, never hangs."""
    client, transport, _ = connected()
    client.connectionLost(None)
    failures = []
    client.command("MAIL FROM:<a@b>").addErrback(failures.append)
    client.send_bdat(io.BytesIO(b"x\r\n"), 3).addErrback(failures.append)
    assert len(failures) == 2
    assert transport.value() == b""


class _TLSTransport:
    """A StringTransport that records startTLS."""

    def __new__(cls):
        from twisted.internet.testing import StringTransport

        class T(StringTransport):
            tls = None

            def startTLS(self, options):
                self.tls = options

        return T()


def _client(security):
    from twisted.internet.task import Clock

    from gateway.deliver.client import SMTPClient

    client = SMTPClient("out.corp.example", Clock(), security=security, peer_name="relay.isp.example")
    transport = _TLSTransport()
    client.makeConnection(transport)
    outcome = []
    client.ready.addBoth(outcome.append)
    return client, transport, outcome


def _said(transport) -> list[bytes]:
    lines = transport.value().split(b"\r\n")[:-1]
    transport.clear()
    return lines


def test_starttls_then_auth_login_to_a_smart_host():
    import base64

    from gateway.deliver.security import OutboundSecurity

    client, t, outcome = _client(OutboundSecurity("opportunistic", auth="BasicAuthRequireTLS", username="relay", password="s3cret"))
    client.dataReceived(b"220 relay ESMTP\r\n")
    assert _said(t) == [b"EHLO out.corp.example"]
    client.dataReceived(b"250-relay\r\n250-STARTTLS\r\n250 SIZE 1000\r\n")
    assert _said(t) == [b"STARTTLS"]
    client.dataReceived(b"220 go ahead\r\n")
    assert t.tls is not None and _said(t) == [b"EHLO out.corp.example"]
    client.dataReceived(b"250-relay\r\n250 AUTH LOGIN\r\n")
    assert _said(t) == [b"AUTH LOGIN"]
    client.dataReceived(b"334 VXNlcm5hbWU6\r\n")
    assert _said(t) == [base64.b64encode(b"relay")]
    client.dataReceived(b"334 UGFzc3dvcmQ6\r\n")
    assert _said(t) == [base64.b64encode(b"s3cret")]
    assert outcome == []
    client.dataReceived(b"235 2.7.0 ok\r\n")
    assert outcome == [client] and client.tls_active and client.authenticated


def test_required_tls_without_starttls_fails_the_connection_before_mail():
    from gateway.deliver.security import OutboundSecurity

    client, t, outcome = _client(OutboundSecurity("required"))
    client.dataReceived(b"220 relay ESMTP\r\n")
    _said(t)
    client.dataReceived(b"250-relay\r\n250 SIZE 1000\r\n")
    assert _said(t) == []
    assert str(outcome[0].value).endswith("451 4.7.5 TLS required, but relay.isp.example does not offer STARTTLS")


def test_auth_is_not_sent_in_clear_unless_allowed():
    from gateway.deliver.security import OutboundSecurity

    client, t, outcome = _client(OutboundSecurity("opportunistic", auth="BasicAuthRequireTLS", username="u", password="p"))
    client.dataReceived(b"220 relay ESMTP\r\n250-relay\r\n250 AUTH PLAIN\r\n")
    assert _said(t) == [b"EHLO out.corp.example"]
    assert "smart host AUTH needs TLS" in str(outcome[0].value)
    clear, t2, ok = _client(OutboundSecurity("none", auth="BasicAuth", username="u", password="p"))
    clear.dataReceived(b"220 relay ESMTP\r\n250-relay\r\n250 AUTH PLAIN\r\n")
    assert _said(t2) == [b"EHLO out.corp.example", b"AUTH PLAIN AHUAcA=="]
    clear.dataReceived(b"235 ok\r\n")
    assert ok == [clear]


def test_replies_behind_the_220_to_starttls_fail_the_connection_before_anything_is_sent():
    """Bytes after the 220 in the same read came before any handshake: the connection is refused, no EHLO goes into TLS."""
    from gateway.deliver.security import OutboundSecurity

    client, t, outcome = _client(OutboundSecurity("required"))
    client.dataReceived(b"220 relay ESMTP\r\n250-relay\r\n250 STARTTLS\r\n")
    assert _said(t) == [b"EHLO out.corp.example", b"STARTTLS"]
    client.dataReceived(b"220 go ahead\r\n250-relay\r\n250 PIPELINING\r\n250 ok\r\n")
    assert t.tls is None and _said(t) == [] and t.disconnecting
    assert str(outcome[0].value) == (
        "451 4.7.5 TLS negotiation with relay.isp.example failed: 35 bytes came after the 220 to STARTTLS, before the handshake"
    )


def test_a_reply_may_have_100_lines_but_not_101():
    """The reply bound (MAX_REPLY_LINES): 100 lines are a reply, the 101st drops the connection and fails the command."""
    from gateway.deliver.client import ReplyTooLong

    client, transport, _ = connected()
    got, failed = [], []
    client.command("NOOP").addCallback(got.append)
    client.dataReceived(b"250-x\r\n" * 99 + b"250 end\r\n")
    assert len(got) == 1 and len(got[0].text.split("\n")) == 100
    client.command("NOOP").addErrback(failed.append)
    client.dataReceived(b"250-x\r\n" * 101)
    assert failed and failed[0].check(ReplyTooLong) and transport.disconnecting
    assert "sent a reply of more than 100 lines or 65536 bytes (101 lines, 505 bytes so far)" in str(failed[0].value)


def test_a_reply_over_64_kb_drops_the_connection_whatever_its_line_count():
    from gateway.deliver.client import ReplyTooLong

    client, transport, _ = connected()
    failed = []
    client.command("NOOP").addErrback(failed.append)
    line = b"250-" + b"y" * 4000 + b"\r\n"
    client.dataReceived(line * 16)
    assert failed == [] and not transport.disconnecting
    client.dataReceived(line)
    assert failed[0].check(ReplyTooLong) and transport.disconnecting


def test_a_reply_too_long_in_a_transaction_marks_the_address_bad(tmp_path):
    """SMTPDelivery: the recipients stay queued and the address goes to the back of the line (AddressHealth)."""
    from gateway.config import HostPort
    from gateway.deliver.health import AddressHealth

    client, _transport, clock = connected()
    client.address = HostPort("192.0.2.25", 25)

    class Pool:
        health = AddressHealth(clock)
        discarded = []  # noqa: RUF012 (one stub class per test)

        def discard(self, c):
            self.discarded.append(c)

    pool = Pool()
    delivery = SMTPDelivery(None, (), "hub.corp.example", pool=pool)
    body = b"Subject: t\r\n\r\nx\r\n"
    envelope = Envelope("7", 7, "<m@x>", "s@x.example", (Recipient("a@corp.example"),), 0.0, len(body))
    results = []
    delivery._acquired((client, True), envelope, ["a@corp.example"], StoredBody(tmp_path / "7.eml", body), True).addCallback(results.append)
    client.dataReceived(b"250-flood\r\n" * 200)
    (state, reason), = results[0].values()
    assert state is RecipientState.PENDING and "sent a reply of more than 100 lines" in reason
    assert pool.discarded == [client] and pool.health.is_bad(HostPort("192.0.2.25", 25))


def _hub_pool_client(credential):
    from gateway.deliver.security import OutboundSecurity

    return _client(OutboundSecurity(tls="none", node=credential))


def test_the_hub_pool_proves_the_node_secret_then_asks_ehlo_again_for_xforward():
    """The frontend answers the hub's challenge (never the secret itself), then learns what a node is granted."""
    from gateway import testing
    from gateway.auth.node import NodeAuth

    node = testing.node_credential("FE1")
    hub = NodeAuth(testing.node_credential("HUB1"), "hub.corp.example")
    client, t, outcome = _hub_pool_client(node)
    client.dataReceived(b"220 hub ESMTP\r\n")
    assert _said(t) == [b"EHLO out.corp.example"]
    client.dataReceived(b"250-hub\r\n250-PIPELINING\r\n250 AUTH X-EXGW-NODE\r\n")
    assert _said(t) == [b"AUTH X-EXGW-NODE"]
    client.dataReceived(b"334 " + hub.start(None).encode() + b"\r\n")
    (response,) = _said(t)
    assert testing.NODE_SECRET not in base64.b64decode(response)
    assert hub.respond(response.decode()).node == "FE1"
    client.dataReceived(b"235 2.7.0 Authentication successful\r\n")
    assert _said(t) == [b"EHLO out.corp.example"] and outcome == []
    client.dataReceived(b"250-hub\r\n250-PIPELINING\r\n250 XFORWARD ADDR HELO\r\n")
    assert outcome == [client] and client.node_authenticated and "XFORWARD" in client.extensions


def test_a_hub_that_refuses_the_node_secret_fails_the_connection_with_a_hint():
    from gateway import testing

    client, _t, outcome = _hub_pool_client(testing.node_credential("FE1"))
    client.dataReceived(b"220 hub ESMTP\r\n250-hub\r\n250 AUTH X-EXGW-NODE\r\n")
    client.dataReceived(b"334 PGFiY0BodWI+\r\n")
    client.dataReceived(b"535 5.7.3 Authentication unsuccessful\r\n")
    assert str(outcome[0].value) == (
        "451 4.7.5 relay.isp.example refused this node's credential (535 5.7.3 Authentication unsuccessful): "
        "every node needs the same node.secret"
    )


def test_a_hub_that_does_not_ask_is_not_sent_the_node_login():
    """An ExternalAuthoritative hub offers no X-EXGW-NODE: the client goes on (and gets no XFORWARD there)."""
    from gateway import testing

    client, t, outcome = _hub_pool_client(testing.node_credential("FE1"))
    client.dataReceived(b"220 hub ESMTP\r\n250-hub\r\n250 AUTH PLAIN LOGIN\r\n")
    assert _said(t) == [b"EHLO out.corp.example"] and outcome == [client]


def test_commands_are_not_held_by_nagle():
    """Commands and BDAT chunks are written whole: the connection sets TCP_NODELAY, so none waits for the server's delayed ACK."""

    class NoDelayTransport(StringTransport):
        no_delay = False

        def setTcpNoDelay(self, enabled):
            self.no_delay = enabled

    client = SMTPClient("fe.corp.example", Clock(), timeout=30)
    transport = NoDelayTransport()
    client.makeConnection(transport)
    assert transport.no_delay


def test_a_bdat_chunk_goes_out_at_once_with_its_pieces_in_order():
    """send_chunk: `BDAT <n>` and the pieces as given, without LAST, without waiting for earlier replies; fires with its reply."""
    client, transport, _ = connected()
    replies = []
    client.send_chunk([b"Subject: a\r\n", b"\r\nbody"], 18).addCallback(replies.append)
    client.send_chunk([b" more"], 5).addCallback(replies.append)
    assert transport.value() == b"BDAT 18\r\nSubject: a\r\n\r\nbodyBDAT 5\r\n more"
    client.dataReceived(b"250 2.0.0 18 octets received\r\n250 2.0.0 5 octets received\r\n")
    assert [r.code for r in replies] == [250, 250]
