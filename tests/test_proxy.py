"""
The frontend's hand-off passes the client's DSN (RFC 3461) and SMTPUTF8
(RFC 6531) parameters on to the hub, exact bytes over StringTransport, and
only those the hub advertised.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.address import Address
from gateway.deliver.client import SMTPClient
from gateway.dsnparams import MailDSN, RecipientDSN
from gateway.proxy import ProxyHandler
from gateway.smtpd.session import MailFrom
from tests.deliver.test_smtp import Pool


def _hub(ehlo: bytes):
    client = SMTPClient("fe.corp.example", Clock(), timeout=30)
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(b"220 hub ready\r\n" + ehlo)
    transport.clear()
    return client, transport


def _hand_off(ehlo: bytes):
    client, transport = _hub(ehlo)
    mail = MailFrom(Address("jösé", "xn--bcher-kva.example"), 10, None, dsn=MailDSN("HDRS", "id 1"), smtputf8=True)
    txn = ProxyHandler(Pool((client, False))).begin(None, mail)
    replies = []
    txn.add_recipient(Address("ålice", "corp.example"), RecipientDSN("SUCCESS", "rfc822;Ålice@corp.example")).addBoth(replies.append)
    first = transport.value()
    transport.clear()
    client.dataReceived(b"250 2.1.0 Sender OK\r\n")
    return client, transport, first, replies


def test_dsn_and_smtputf8_go_on_to_a_hub_that_offers_them():
    """MAIL and the first RCPT go in one pipelined write."""
    client, transport, first, replies = _hand_off(b"250-hub\r\n250-PIPELINING\r\n250-SIZE 100\r\n250-DSN\r\n250 SMTPUTF8\r\n")
    assert first == (
        "MAIL FROM:<jösé@xn--bcher-kva.example> SIZE=10 SMTPUTF8 RET=HDRS ENVID=id+201\r\n"
        "RCPT TO:<ålice@corp.example> NOTIFY=SUCCESS ORCPT=rfc822;+C3+85lice@corp.example\r\n"
    ).encode()
    assert transport.value() == b"" and replies == []
    client.dataReceived(b"250 2.1.5 Recipient OK\r\n")
    assert str(replies[0]) == "250 2.1.5 Recipient OK"


def test_a_hub_without_dsn_gets_no_dsn_parameter():
    _client, _transport, first, _replies = _hand_off(b"250-hub\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n")
    assert first == "MAIL FROM:<jösé@xn--bcher-kva.example> SMTPUTF8\r\nRCPT TO:<ålice@corp.example>\r\n".encode()


def test_a_hub_without_pipelining_gets_rcpt_after_the_reply_to_mail():
    client, transport, first, replies = _hand_off(b"250-hub\r\n250-DSN\r\n250 SMTPUTF8\r\n")
    assert first == "MAIL FROM:<jösé@xn--bcher-kva.example> SMTPUTF8 RET=HDRS ENVID=id+201\r\n".encode()
    assert transport.value() == "RCPT TO:<ålice@corp.example> NOTIFY=SUCCESS ORCPT=rfc822;+C3+85lice@corp.example\r\n".encode()
    client.dataReceived(b"250 2.1.5 Recipient OK\r\n")
    assert str(replies[0]) == "250 2.1.5 Recipient OK"


def test_a_refused_sender_is_the_answer_to_the_pipelined_rcpt():
    """The hub refuses MAIL: the client's RCPT gets that refusal, not the 503 the hub gave the RCPT behind it."""
    client, transport = _hub(b"250-hub\r\n250 PIPELINING\r\n")
    pool = Pool((client, False))
    txn = ProxyHandler(pool).begin(None, MailFrom(Address("scanner", "corp.example"), None, None))
    replies = []
    txn.add_recipient(Address("alice", "corp.example")).addBoth(replies.append)
    assert transport.value() == b"MAIL FROM:<scanner@corp.example>\r\nRCPT TO:<alice@corp.example>\r\n"
    client.dataReceived(b"550 5.7.1 Sender refused\r\n503 5.5.1 Bad sequence of commands\r\n")
    assert replies[0].value.reply.code == 550 and txn.client is None and not client.busy
    assert pool.released == [client]
