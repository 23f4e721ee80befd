"""
Attack: a client holds a session open for ever with commands that cost it
nothing (NOOP, RSET, VRFY, HELP), each answered by the gateway. Past
[limits] junk_command_limit (Postfix's smtpd_junk_command_limit, 100) the
session is closed with 421 4.7.0; a message accepted starts the count
again; other gateway nodes reusing their connection are not counted.
"""

from gateway import testing
from gateway.policy.limits import ConnectionLimits
from tests.smtpd.test_protocol import Client

CLOSE = "421 4.7.0 Too many errors on this connection, closing transmission channel"


def test_the_101st_noop_closes_the_session():
    c = Client()
    c.hello()
    replies = c.send("NOOP\r\n" * 100)
    assert replies == ["250 2.0.0 OK"] * 100
    assert c.send("NOOP\r\nNOOP\r\n") == [CLOSE]
    assert c.transport.disconnecting


def test_rset_vrfy_and_help_count_as_junk_too():
    c = Client()
    c.proto.limits = ConnectionLimits(junk_command_limit=3)
    c.hello()
    assert len(c.send("RSET\r\nVRFY bob\r\nHELP\r\n")) > 0 and not c.transport.disconnecting
    assert c.send("RSET\r\n") == [CLOSE] and c.transport.disconnecting


def test_an_accepted_message_starts_the_count_again():
    c = Client()
    c.proto.limits = ConnectionLimits(junk_command_limit=3)
    c.hello()
    for _ in range(3):
        c.send("NOOP\r\nNOOP\r\nNOOP\r\n")
        c.send("MAIL FROM:<app@corp.example>\r\nRCPT TO:<bob@corp.example>\r\nDATA\r\n")
        assert c.send("Subject: x\r\n\r\nbody\r\n.\r\n")[-1].startswith("250 ")
    assert not c.transport.disconnecting


def test_another_gateway_node_reusing_its_connection_is_not_counted():
    hub = Client(connector="Default", ip="127.0.0.1")
    hub.proto.limits = ConnectionLimits(junk_command_limit=3)
    hub.hello()
    hub.send(testing.node_login(testing.node_credential()))
    assert hub.send("RSET\r\n" * 10) == ["250 2.0.0 Resetting"] * 10
    assert not hub.transport.disconnecting
