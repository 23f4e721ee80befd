"""
Only parameters of advertised extensions go to a next hop (RFC 1870, RFC 5321
4.1.1.11): a strict server answers 555 to any other, permanently.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.deliver.capabilities import mail_command, mail_parameters
from gateway.deliver.client import SMTPClient
from gateway.deliver.smtp import SMTPDelivery
from gateway.envelope import Envelope, Recipient, RecipientState
from tests.deliver.test_smtp import BODY, Body, Pool


class _TLSTransport(StringTransport):
    tls = None

    def startTLS(self, options):
        self.tls = options


def _said(transport) -> bytes:
    said = transport.value()
    transport.clear()
    return said


def _deliver(client, body_type=""):
    env = Envelope("7", 7, "<m@x>", "s@x.example", (Recipient("a@corp.example"),), 0.0, len(BODY), body_type=body_type)
    results = []
    SMTPDelivery(None, (), "hub.corp.example", pool=Pool((client, True)), next_hop="strict").deliver(
        env, ["a@corp.example"], Body(BODY)
    ).addBoth(results.append)
    return results


def test_parameters_follow_the_advertised_extensions():
    """SIZE only with SIZE, BODY=8BITMIME only with 8BITMIME, nothing after HELO."""
    assert mail_parameters({}, 21, "8BITMIME") == []
    assert mail_parameters({"SIZE": "1000"}, 21, "8BITMIME") == ["SIZE=21"]
    assert mail_parameters({"8BITMIME": ""}, 21, "8BITMIME") == ["BODY=8BITMIME"]
    assert mail_parameters({"SIZE": "", "8BITMIME": ""}, 21, "7BIT") == ["SIZE=21"]
    assert mail_parameters({"SIZE": ""}, None) == []
    assert mail_command("s@x.example", ["SIZE=21", "BODY=8BITMIME"]) == "MAIL FROM:<s@x.example> SIZE=21 BODY=8BITMIME"
    assert mail_command("", []) == "MAIL FROM:<>"


def test_a_next_hop_without_size_gets_a_bare_mail_from_and_the_message_is_delivered():
    """EHLO without SIZE (and without PIPELINING): MAIL FROM carries no SIZE= for a strict server to refuse."""
    c = SMTPClient("hub.corp.example", Clock(), timeout=30)
    t = StringTransport()
    c.makeConnection(t)
    c.dataReceived(b"220 strict ESMTP\r\n250-strict\r\n250 8BITMIME\r\n")
    t.clear()
    results = _deliver(c, "8BITMIME")
    assert _said(t) == b"MAIL FROM:<s@x.example> BODY=8BITMIME\r\n"
    c.dataReceived(b"250 2.1.0 ok\r\n")
    assert _said(t) == b"RCPT TO:<a@corp.example>\r\n"
    c.dataReceived(b"250 2.1.5 ok\r\n")
    assert _said(t) == b"DATA\r\n"
    c.dataReceived(b"354 go\r\n")
    assert _said(t) == BODY + b".\r\n"
    c.dataReceived(b"250 2.0.0 queued\r\n")
    assert results == [{"a@corp.example": (RecipientState.DELIVERED, "250 2.0.0 queued")}]


def test_after_a_helo_fallback_no_parameter_is_sent():
    """EHLO refused with 502: HELO, then MAIL FROM with no parameter at all."""
    c = SMTPClient("hub.corp.example", Clock(), timeout=30)
    t = StringTransport()
    c.makeConnection(t)
    c.dataReceived(b"220 old SMTP\r\n")
    assert _said(t) == b"EHLO hub.corp.example\r\n"
    c.dataReceived(b"502 5.5.1 command not recognized\r\n")
    assert _said(t) == b"HELO hub.corp.example\r\n"
    c.dataReceived(b"250 old\r\n")
    assert c.extensions == {}
    _deliver(c, "8BITMIME")
    assert _said(t) == b"MAIL FROM:<s@x.example>\r\n"


def test_a_helo_fallback_after_starttls_forgets_what_the_first_ehlo_offered():
    """The EHLO before STARTTLS offered SIZE; the one after it fails, so HELO: no SIZE= any more (RFC 3207 4.2)."""
    from gateway.deliver.security import OutboundSecurity

    c = SMTPClient("hub.corp.example", Clock(), timeout=30, security=OutboundSecurity("opportunistic"), peer_name="strict")
    t = _TLSTransport()
    c.makeConnection(t)
    c.dataReceived(b"220 strict ESMTP\r\n250-strict\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 STARTTLS\r\n")
    assert _said(t) == b"EHLO hub.corp.example\r\nSTARTTLS\r\n"
    c.dataReceived(b"220 go ahead\r\n")
    assert t.tls is not None and _said(t) == b"EHLO hub.corp.example\r\n"
    c.dataReceived(b"500 5.5.1 what\r\n")
    assert _said(t) == b"HELO hub.corp.example\r\n"
    c.dataReceived(b"250 strict\r\n")
    _deliver(c, "8BITMIME")
    assert _said(t) == b"MAIL FROM:<s@x.example>\r\n"


def test_size_and_body_go_to_a_next_hop_that_offers_them():
    c = SMTPClient("hub.corp.example", Clock(), timeout=30)
    t = StringTransport()
    c.makeConnection(t)
    c.dataReceived(b"220 hop ESMTP\r\n250-hop\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000\r\n")
    t.clear()
    _deliver(c, "8BITMIME")
    assert _said(t) == b"MAIL FROM:<s@x.example> SIZE=21 BODY=8BITMIME\r\nRCPT TO:<a@corp.example>\r\nDATA\r\n"


def _dsn_envelope():
    return Envelope(
        "7", 7, "<m@x>", "s@x.example",
        (Recipient("a@corp.example", notify="SUCCESS,FAILURE", orcpt="rfc822;A+1@corp.example"), Recipient("b@corp.example")),
        0.0, len(BODY), dsn_ret="HDRS", dsn_envid="QQ 314159",
    )


def _deliver_dsn(ehlo: bytes):
    c = SMTPClient("hub.corp.example", Clock(), timeout=30)
    t = StringTransport()
    c.makeConnection(t)
    c.dataReceived(b"220 hop ESMTP\r\n" + ehlo)
    t.clear()
    results = []
    SMTPDelivery(None, (), "hub.corp.example", pool=Pool((c, True)), next_hop="hop").deliver(
        _dsn_envelope(), ["a@corp.example", "b@corp.example"], Body(BODY)
    ).addBoth(results.append)
    return c, t, results


def test_dsn_parameters_go_re_encoded_to_a_next_hop_that_offers_dsn_and_it_reports_success_itself():
    c, t, results = _deliver_dsn(b"250-hop\r\n250-PIPELINING\r\n250 DSN\r\n")
    assert _said(t) == (
        b"MAIL FROM:<s@x.example> RET=HDRS ENVID=QQ+20314159\r\n"
        b"RCPT TO:<a@corp.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2B1@corp.example\r\n"
        b"RCPT TO:<b@corp.example>\r\nDATA\r\n"
    )
    c.dataReceived(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    ((_, reply_a), (_, _reply_b)) = results[0].values()
    assert reply_a == "250 2.0.0 queued" and getattr(reply_a, "dsn_action", "") == ""


def test_without_dsn_at_the_next_hop_no_dsn_parameter_is_sent_and_delivery_counts_as_relayed():
    c, t, results = _deliver_dsn(b"250-hop\r\n250 PIPELINING\r\n")
    assert _said(t) == b"MAIL FROM:<s@x.example>\r\nRCPT TO:<a@corp.example>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n"
    c.dataReceived(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    state, reply = results[0]["a@corp.example"]
    assert (state, reply, reply.dsn_action) == (RecipientState.DELIVERED, "250 2.0.0 queued", "relayed")


def _deliver_utf8(ehlo: bytes):
    c = SMTPClient("hub.corp.example", Clock(), timeout=30)
    t = StringTransport()
    c.makeConnection(t)
    c.dataReceived(b"220 hop ESMTP\r\n" + ehlo)
    t.clear()
    env = Envelope("7", 7, "<m@x>", "jösé@xn--bcher-kva.example", (Recipient("ålice@corp.example"),), 0.0, len(BODY), smtputf8=True)
    results = []
    SMTPDelivery(None, (), "hub.corp.example", pool=Pool((c, True)), next_hop="hop").deliver(
        env, ["ålice@corp.example"], Body(BODY)
    ).addBoth(results.append)
    return c, t, results


def test_a_utf8_message_goes_with_smtputf8_to_a_next_hop_that_offers_it():
    c, t, results = _deliver_utf8(b"250-hop\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n")
    assert _said(t) == "MAIL FROM:<jösé@xn--bcher-kva.example> SMTPUTF8\r\nRCPT TO:<ålice@corp.example>\r\nDATA\r\n".encode()
    c.dataReceived(b"250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    assert results[0]["ålice@corp.example"][0] is RecipientState.DELIVERED


def test_a_utf8_message_bounces_with_5_6_7_at_a_next_hop_without_smtputf8_and_nothing_is_sent():
    _c, t, results = _deliver_utf8(b"250-hop\r\n250 PIPELINING\r\n")
    assert _said(t) == b""
    assert results == [{"ålice@corp.example": (
        RecipientState.FAILED, "550 5.6.7 hop does not support SMTPUTF8, which this message's UTF-8 addresses or headers need",
    )}]
