"""
An ORCPT whose xtext decodes to CRLF and a header: it is stored decoded, but
neither our notice nor the RCPT line to a next hop ever carries the line
break (RFC 3461 xtext exists so that it cannot).
"""

from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.dsn import build_dsn
from tests.smtpd.test_protocol import Client

ATTACK = "RCPT TO:<alice@corp.example> NOTIFY=SUCCESS ORCPT=rfc822;a@x+0D+0AX-Injected:+20yes\r\n"


def test_an_orcpt_with_a_line_break_is_accepted_but_never_breaks_a_line():
    c = Client()
    c.hello()
    c.send("MAIL FROM:<app@devices.example> ENVID=ok\r\n")
    assert c.send(ATTACK) == ["250 2.1.5 Recipient OK"]
    orcpt = c.handler.transactions[0].dsn["alice@corp.example"].orcpt
    assert orcpt == "rfc822;a@x\r\nX-Injected: yes"
    env = Envelope("1", 1, "<m@x>", "app@devices.example", (), 0.0, 1)
    rcpt = Recipient("alice@corp.example", RecipientState.DELIVERED, 1, "250 ok", notify="SUCCESS", orcpt=orcpt)
    raw = build_dsn("delivered", env, [rcpt], b"Subject: x\r\n", "mail.corp.example", 0.0, "b", message_id="<n@x>")
    assert b"\r\nX-Injected" not in raw and b"Original-Recipient: rfc822; a@x??X-Injected: yes\r\n" in raw

    from gateway.deliver.capabilities import rcpt_command, rcpt_parameters

    line = rcpt_command("alice@corp.example", rcpt_parameters({"DSN": ""}, "SUCCESS", orcpt))
    assert line == "RCPT TO:<alice@corp.example> NOTIFY=SUCCESS ORCPT=rfc822;a@x+0D+0AX-Injected:+20yes"


def test_an_envid_with_a_line_break_is_refused():
    c = Client()
    c.hello()
    assert c.send("MAIL FROM:<app@devices.example> ENVID=a+0D+0AX-Injected:+20yes\r\n") == ["501 5.5.4 Invalid arguments"]
