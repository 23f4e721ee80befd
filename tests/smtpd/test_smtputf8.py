"""
SMTPUTF8 on the receive side (RFC 6531/6532), exact bytes over StringTransport:
advertised; a MAIL with SMTPUTF8 opens a transaction that takes UTF-8
addresses; without it they stay 501; the hub marks the message as needing a
SMTPUTF8 next hop when an address or a header is UTF-8.
"""

from tests.smtpd.test_protocol import Client
from tests.test_intake import Hub


def test_utf8_envelope_in_a_smtputf8_transaction():
    c = Client()
    assert "250-SMTPUTF8" in c.send("EHLO client.example\r\n")
    assert c.send("MAIL FROM:<jösé@bücher.example> SMTPUTF8\r\n".encode()) == ["250 2.1.0 Sender OK"]
    assert c.send("RCPT TO:<ålice@corp.example>\r\n".encode()) == ["250 2.1.5 Recipient OK"]
    (txn,) = c.handler.transactions
    assert (str(txn.mail.sender), txn.mail.smtputf8, [str(r) for r in txn.recipients]) == (
        "jösé@xn--bcher-kva.example", True, ["ålice@corp.example"]
    )


def test_without_smtputf8_8bit_addresses_are_still_refused():
    c = Client()
    c.hello()
    assert c.send("MAIL FROM:<jösé@devices.example>\r\n".encode()) == ["501 5.1.7 Invalid address"]
    assert c.send("MAIL FROM:<jose@devices.example>\r\n") == ["250 2.1.0 Sender OK"]
    assert c.send("RCPT TO:<ålice@corp.example>\r\n".encode()) == ["501 5.1.3 Invalid address"]


def test_a_command_that_is_not_utf8_is_a_syntax_error():
    c = Client()
    c.hello()
    assert c.send(b"MAIL FROM:<j\xf6se@devices.example> SMTPUTF8\r\n") == ["501 5.5.4 Invalid arguments"]


def test_the_hub_marks_a_utf8_message_and_leaves_an_ascii_one_alone(tmp_path):
    hub = Hub(tmp_path)
    hub.send(
        "EHLO fe.corp.example\r\nMAIL FROM:<scan@corp.example> SMTPUTF8\r\nRCPT TO:<ålice@corp.example>\r\nDATA\r\n"
        "Subject: x\r\n\r\nhi\r\n.\r\n".encode()
    )
    hub.send(
        "MAIL FROM:<scan@corp.example> SMTPUTF8\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nSubject: Grüße\r\n\r\nhi\r\n.\r\n".encode()
    )
    hub.send(b"MAIL FROM:<scan@corp.example> SMTPUTF8\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nSubject: plain\r\n\r\nhi \xc3\xa9\r\n.\r\n")
    first, second, third = hub.scheduler.queued
    assert [r.address for r in first.recipients] == ["ålice@corp.example"]
    assert (first.smtputf8, second.smtputf8, third.smtputf8) == (True, True, False)
