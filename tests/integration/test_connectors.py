"""Receive connectors on one port, told apart by the client's 127.x source address."""

import smtplib
import socket

from tests.integration.gatewayproc import Gateway, anon_relay, free_port

EXTRA_CONNECTORS = """
[[receive_connectors]]
name = "Scanners"
role = "frontend"
bindings = ["127.0.0.1:{port}"]
remote_ip_ranges = ["127.0.0.4-127.0.0.5"]
permission_groups = ["AnonymousUsers"]
tarpit_interval = "0s"
banner = "220 {{connector}} ready"
max_inbound_connection_per_source = 2
message_rate_limit = 2
"""


def gateway(tmp_path):
    port = free_port()
    gw = Gateway(tmp_path, frontend_port=port)
    gw.add_config(anon_relay(port, "127.0.0.2") + EXTRA_CONNECTORS.format(port=port))
    return gw.start()


def session(gw, source: str) -> smtplib.SMTP:
    s = smtplib.SMTP(timeout=10, source_address=(source, 0))
    s.connect("127.0.0.1", gw.frontend_port)
    return s


def test_trusted_device_relays_outside_client_does_not(tmp_path):
    """Same port: 127.0.0.2 lands on Anon Relay and passes the relay rule; 127.0.0.3 gets 550 5.7.54."""
    gw = gateway(tmp_path)
    try:
        with session(gw, "127.0.0.2") as s:
            s.ehlo("printer")
            s.mail("printer@devices.example")
            code, text = s.rcpt("someone@outside.example")
            # The connector lets it relay; without a send connector the hub has no route yet.
            assert (code, text) == (550, b"5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain")
        with session(gw, "127.0.0.3") as s:
            s.ehlo("laptop")
            s.mail("someone@devices.example")
            assert s.rcpt("someone@outside.example") == (550, b"5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
        assert "127.0.0.2:" in gw.log() and "-> EXSERVER\\Anon Relay" in gw.log()
    finally:
        gw.stop()


def test_per_source_connection_limit_and_banner(tmp_path):
    """Two connections from 127.0.0.4 are served (the banner names the connector); the third gets 421 4.3.2."""
    gw = gateway(tmp_path)
    try:
        held = [session(gw, "127.0.0.4") for _ in range(2)]
        third = socket.create_connection(("127.0.0.1", gw.frontend_port), source_address=("127.0.0.4", 0), timeout=10)
        assert third.makefile("rb").readline() == (
            b"421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel\r\n"
        )
        third.close()
        other = session(gw, "127.0.0.5")
        assert other.noop()[0] == 250
        sock = socket.create_connection(("127.0.0.1", gw.frontend_port), source_address=("127.0.0.5", 0), timeout=10)
        assert sock.makefile("rb").readline() == b"220 EXSERVER\\Scanners ready\r\n"
        sock.close()
        for s in [*held, other]:
            s.close()
    finally:
        gw.stop()


def test_message_rate_limit(tmp_path):
    """message_rate_limit = 2 per minute: the third MAIL from the source gets 421 4.4.2 and the session ends."""
    gw = gateway(tmp_path)
    try:
        with session(gw, "127.0.0.4") as s:
            for i in range(2):
                s.sendmail("scan@devices.example", ["alice@corp.example"], f"Subject: {i}\r\n\r\nx\r\n".encode())
            s.ehlo("scanner")
            code, text = s.mail("scan@devices.example")
            assert (code, text) == (421, b"4.4.2 Message submission rate for this client has exceeded the configured limit")
    finally:
        gw.stop()


SPOOF_AND_TIMEOUT = """
[[receive_connectors]]
name = "Printers"
role = "frontend"
bindings = ["127.0.0.1:{port}"]
remote_ip_ranges = ["127.0.0.6"]
permission_groups = ["AnonymousUsers"]
tarpit_interval = "0s"
connection_inactivity_timeout = "1s"
[[receive_connectors.permissions]]
user = "NT AUTHORITY\\\\ANONYMOUS LOGON"
extended_rights = ["ms-Exch-SMTP-Accept-Authoritative-Domain-Sender"]
deny = true
"""


def test_spoofed_internal_sender_refused_and_idle_session_timed_out(tmp_path):
    """On a connector that withholds Accept-Authoritative-Domain-Sender, ceo@corp.example is refused; idling gets 451 4.7.0."""
    port = free_port()
    gw = Gateway(tmp_path, frontend_port=port)
    gw.add_config(SPOOF_AND_TIMEOUT.format(port=port))
    gw.start()
    try:
        with session(gw, "127.0.0.6") as s:
            s.ehlo("printer")
            assert s.mail("ceo@corp.example") == (550, b"5.7.1 Client does not have permissions to send as this sender")
            assert s.mail("printer@devices.example") == (250, b"2.1.0 Sender OK")
        sock = socket.create_connection(("127.0.0.1", gw.frontend_port), source_address=("127.0.0.6", 0), timeout=10)
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        assert f.readline() == b"451 4.7.0 Timeout waiting for client input\r\n"
        assert f.readline() == b""
        sock.close()
    finally:
        gw.stop()
