"""
The hub trusted any local process: anything inside its connector's ranges
(127.0.0.0/8 in the sample) could send XFORWARD with a forged client
address, HELO and AUTH identity, relay anywhere, and the Received header
then said "authenticated as ceo". Now the hub's connector is
`auth_mechanisms = ["ExchangeServer"]`: a client has no rights until it
proves the node secret (AUTH X-EXGW-NODE), and XFORWARD is a node's alone.
The real frontend does that by itself, and the hub names it beside the
XFORWARD values.
"""

import base64
import smtplib

from tests.integration.gatewayproc import Gateway, exgateway_cli


def _headers(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


def test_a_local_process_cannot_forge_xforward_or_relay_through_the_hub(tmp_path):
    hub = Gateway(tmp_path, role="hub").start()
    frontend = Gateway(tmp_path, role="frontend", config=hub.config, frontend_port=hub.frontend_port, hub_port=hub.hub_port).start()
    try:
        with smtplib.SMTP("127.0.0.1", hub.hub_port, timeout=30) as s:
            code, ehlo = s.ehlo("fe1.corp.example")
            assert code == 250 and b"AUTH X-EXGW-NODE" in ehlo and b"XFORWARD" not in ehlo
            assert s.docmd("XFORWARD", "ADDR=192.0.2.99 HELO=ceo-laptop AUTH=ceo CONNECTOR=EXSERVER\\Client+20Frontend") == (
                500, b"5.3.3 Unrecognized command")
            assert s.docmd("MAIL", "FROM:<ceo@corp.example>") == (
                530, b"5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM")
            assert s.docmd("RCPT", "TO:<wire-transfer@outside.example>")[0] == 503
            # Guessing the node's answer: the challenge is fresh, the secret unknown.
            code, challenge = s.docmd("AUTH", "X-EXGW-NODE")
            assert code == 334 and base64.b64decode(challenge).endswith(b"@mail.corp.example>")
            assert s.docmd(base64.b64encode(b"EXSERVER " + b"0" * 64).decode()) == (535, b"5.7.3 Authentication unsuccessful")
            assert s.docmd("XFORWARD", "ADDR=192.0.2.99 AUTH=ceo")[0] == 500

        # The real frontend authenticates by itself; the hub records who forwarded.
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=30) as s:
            s.sendmail("printer@devices.example", ["alice@corp.example"], b"Subject: scan\r\n\r\npage 1\r\n")
        (message,) = hub.wait_until(lambda: hub.mailbox("alice@corp.example"), what="delivery through the frontend")
        headers = _headers(message)
        assert b"(forwarded by gateway node EXSERVER [127.0.0.1])" in headers
        every_header = b"".join(_headers(m) for m in hub.all_delivered())
        assert b"authenticated as" not in every_header and b"192.0.2.99" not in every_header
        assert "gateway node EXSERVER from 127.0.0.1: ok" in hub.log()

        def tracked():
            out = exgateway_cli(hub.config, "track", "--sender", "printer@devices.example", "--list").stdout
            return out if "RECEIVE" in out else None

        assert "Via:EXSERVER [127.0.0.1]" in hub.wait_until(tracked, what="the RECEIVE event")
    finally:
        frontend.stop()
        hub.stop()


def test_a_frontend_with_another_secret_gets_no_hub(tmp_path):
    """Its clients get 451 and its log says which file to copy; the hub took nothing from it."""
    hub = Gateway(tmp_path / "hub", role="hub").start()
    config = tmp_path / "frontend.toml"
    config.write_text(hub.config.read_text().replace("node_secret_file = ", f'node_secret_file = "{tmp_path}/other.secret"\n# was: '))
    frontend = Gateway(tmp_path / "fe", role="frontend", config=config, frontend_port=hub.frontend_port, hub_port=hub.hub_port).start()
    try:
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=30) as s:
            s.ehlo("dev")
            s.mail("printer@devices.example")
            assert s.rcpt("alice@corp.example") == (451, b"4.4.0 Temporary server error. Please try again later")
        assert f"refused this node's credential (535 5.7.3 Authentication unsuccessful): every node needs the same {tmp_path}/other.secret" in frontend.log()
        assert hub.all_delivered() == []
    finally:
        frontend.stop()
        hub.stop()


def test_an_externally_secured_hub_does_not_take_xforward_either():
    """The old sample (ExternalAuthoritative over 127.0.0.0/8): its clients may relay, but never tell the hub who the client was."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from gateway import testing
    from gateway.domains import AcceptedDomains
    from gateway.policy.checks import SessionPolicy
    from gateway.smtpd.protocol import ESMTPServer

    cfg = testing.config(receive_connectors=[
        {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["127.0.0.0/8"],
         "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]},
    ])
    handler = testing.FakeHandler()
    proto = ESMTPServer(cfg.receive_connectors[0], handler, SessionPolicy(AcceptedDomains(cfg.accepted_domains)), Clock(),
                        node=testing.node_credential())
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 2525), peerAddress=IPv4Address("TCP", "127.0.0.9", 40000))
    proto.makeConnection(transport)
    proto.dataReceived(b"EHLO local\r\nXFORWARD ADDR=192.0.2.99 AUTH=ceo\r\nMAIL FROM:<ceo@corp.example>\r\n")
    lines = transport.value().decode().split("\r\n")
    assert not [line for line in lines if "XFORWARD" in line]
    assert lines[-3:] == ["500 5.3.3 Unrecognized command", "250 2.1.0 Sender OK", ""]
    assert handler.transactions[0].session.origin().client_ip == "127.0.0.9"


def test_a_node_login_in_clear_does_not_survive_starttls():
    """RFC 3207 4.2: a hub connector offering TLS forgets the node login at STARTTLS; XFORWARD needs a new one."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock

    from gateway import testing
    from gateway.domains import AcceptedDomains
    from gateway.policy.checks import SessionPolicy
    from gateway.smtpd.protocol import ESMTPServer
    from tests.smtpd.test_tls_auth import FakeTLS, TLSTransport

    cfg = testing.config(receive_connectors=[
        {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["127.0.0.0/8"],
         "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExchangeServer", "Tls"]},
    ])
    clock = Clock()
    proto = ESMTPServer(cfg.receive_connectors[0], testing.FakeHandler(), SessionPolicy(AcceptedDomains(cfg.accepted_domains)),
                        clock, tls=FakeTLS(), node=testing.node_credential())
    transport = TLSTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 2525), peerAddress=IPv4Address("TCP", "127.0.0.9", 40000))
    proto.makeConnection(transport)
    proto.dataReceived(b"EHLO fe\r\n" + testing.node_login(testing.node_credential()))
    assert proto.session.node == "FRONTEND1"
    proto.dataReceived(b"STARTTLS\r\n")
    proto.handshakeCompleted()
    transport.clear()
    proto.dataReceived(b"EHLO fe\r\nXFORWARD ADDR=192.0.2.99\r\n")
    clock.advance(5)  # an anonymous client's 5xx waits out the tarpit again
    lines = transport.value().decode().split("\r\n")
    assert "250-AUTH X-EXGW-NODE" in lines and lines[-2] == "500 5.3.3 Unrecognized command"
    assert proto.session.node == ""
