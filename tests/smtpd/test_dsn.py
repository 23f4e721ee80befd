"""
RFC 3461 on the receive side: DSN advertised; RET/ENVID on MAIL and
NOTIFY/ORCPT on RCPT accepted (also unasked, as PHPMailer sends them),
checked, and handed to the transaction; the hub's intake stores them.
"""

import pytest

from gateway.dsnparams import MailDSN, RecipientDSN
from tests.smtpd.test_protocol import Client
from tests.test_intake import Hub


def test_dsn_parameters_reach_the_transaction():
    c = Client()
    assert "250-DSN" in c.send("EHLO client.example\r\n")
    assert c.send("MAIL FROM:<app@devices.example> RET=HDRS ENVID=QQ314159+2B1\r\n") == ["250 2.1.0 Sender OK"]
    assert c.send("RCPT TO:<alice@corp.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice@corp.example\r\n") == [
        "250 2.1.5 Recipient OK"
    ]
    assert c.send("RCPT TO:<bob@corp.example>\r\n") == ["250 2.1.5 Recipient OK"]
    (txn,) = c.handler.transactions
    assert txn.mail.dsn == MailDSN("HDRS", "QQ314159+1")
    assert txn.dsn == {"alice@corp.example": RecipientDSN("SUCCESS,FAILURE", "rfc822;Alice@corp.example"), "bob@corp.example": None}


def test_phpmailer_sends_notify_after_helo_and_is_accepted():
    """PHPMailer's `dsn` option sends NOTIFY= whatever the EHLO said (here HELO: no extensions at all)."""
    c = Client()
    c.send("HELO client.example\r\n")
    c.send("MAIL FROM:<app@devices.example>\r\n")
    assert c.send("RCPT TO:<alice@corp.example> NOTIFY=SUCCESS,FAILURE\r\n") == ["250 2.1.5 Recipient OK"]


@pytest.mark.parametrize("command", [
    "MAIL FROM:<app@devices.example> RET=BODY",
    "MAIL FROM:<app@devices.example> ENVID=bad+xtext",
    "RCPT TO:<alice@corp.example> NOTIFY=NEVER,SUCCESS",
    "RCPT TO:<alice@corp.example> ORCPT=alice@corp.example",
])
def test_malformed_dsn_parameters_are_501(command):
    c = Client()
    c.hello()
    if command.startswith("RCPT"):
        c.send("MAIL FROM:<app@devices.example>\r\n")
    assert c.send(command + "\r\n") == ["501 5.5.4 Invalid arguments"]


def test_the_hub_queues_ret_envid_notify_and_orcpt(tmp_path):
    hub = Hub(tmp_path)
    lines = hub.send(
        b"EHLO fe.corp.example\r\nMAIL FROM:<scan@corp.example> RET=FULL ENVID=env-7\r\n"
        b"RCPT TO:<alice@corp.example> NOTIFY=SUCCESS ORCPT=rfc822;alice+2Bx@corp.example\r\n"
        b"RCPT TO:<bob@corp.example> NOTIFY=NEVER\r\nRCPT TO:<carol@corp.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"
    )
    assert lines[-1].startswith("250 2.6.0 ")
    (env,) = hub.scheduler.queued
    assert (env.dsn_ret, env.dsn_envid) == ("FULL", "env-7")
    assert [(r.address, r.notify, r.orcpt) for r in env.recipients] == [
        ("alice@corp.example", "SUCCESS", "rfc822;alice+x@corp.example"),
        ("bob@corp.example", "NEVER", ""),
        ("carol@corp.example", "", ""),
    ]
    (stored,) = hub.store.recover()
    assert stored.recipients == env.recipients and stored.dsn_envid == "env-7"
