"""
PROXY header + implicit TLS: on a 465 connector behind a balancer, the
bytes that arrive in the same read as the PROXY header are the client's
first TLS bytes. Handed to the session in clear, an attacker's EHLO (and
anything else) written right behind the header ran before any handshake.
They now go to the TLS layer: a ClientHello there completes the handshake,
clear text there is a TLS error, and no SMTP command in clear is executed.
"""

import socket
import ssl

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.factory import BindingFactory
from gateway.smtpd.proxyproto import v1_header, v2_header
from tests.integration.gatewayproc import Gateway, free_port, wait_for_port
from tests.smtpd.test_tls_auth import FakeTLS

SMTPS = {
    "name": "Client SMTPS", "role": "frontend", "bindings": ["0.0.0.0:465"], "implicit_tls": True,
    "permission_groups": ["ExchangeUsers"], "auth_mechanisms": ["Tls", "BasicAuth", "BasicAuthRequireTLS"],
    "proxy_protocol": True, "trusted_proxies": ["10.0.0.5"], "tarpit_interval": "0s",
}


class TLSLayer:
    """Stands for the TLS layer startTLS puts under the session: records what it is given."""

    def __init__(self):
        self.received = b""

    def dataReceived(self, data):
        self.received += data


class BalancerConnection(StringTransport):
    """The balancer's connection as the reactor's transports behave: startTLS makes a TLS layer its `protocol`."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.protocol = None
        self.tls = None

    def startTLS(self, options):
        self.tls = options
        self.protocol = TLSLayer()


def test_an_ehlo_in_clear_behind_the_header_goes_to_the_tls_layer_not_the_session():
    """StringTransport: the session never sees `EHLO`, writes nothing in clear, and the TLS layer gets the bytes."""
    cfg = testing.config(receive_connectors=[SMTPS])
    connectors = cfg.receive_connectors
    factory = BindingFactory(connectors[0].bindings[0], "frontend", connectors, testing.FakeHandler(),
                             SessionPolicy(AcceptedDomains(cfg.accepted_domains)), Clock(), tls=FakeTLS())
    proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.5", 40000))
    conn = BalancerConnection(hostAddress=IPv4Address("TCP", "10.0.0.1", 465), peerAddress=IPv4Address("TCP", "10.0.0.5", 40000))
    proto.makeConnection(conn)
    smuggled = b"EHLO evil.example\r\nAUTH PLAIN AGEAYg==\r\n"
    proto.dataReceived(v2_header(("203.0.113.9", 51000), ("198.51.100.1", 465)) + smuggled)
    assert conn.tls == "tls-options"
    assert conn.protocol.received == smuggled
    session = proto.inner.session
    assert session.client_ip == "203.0.113.9" and session.helo is None
    # Nothing in clear: the banner waits for the handshake (it is written into the TLS layer by the session).
    assert b"250" not in conn.value()


def _gateway(tmp_path):
    port = free_port()
    gw = Gateway(tmp_path / "gw")
    gw.add_config(f"""
[[receive_connectors]]
name = "Client SMTPS"
role = "frontend"
bindings = ["127.0.0.1:{port}"]
implicit_tls = true
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth", "BasicAuthRequireTLS"]
proxy_protocol = true
trusted_proxies = ["127.0.0.1"]
protocol_logging_level = "Verbose"
""")
    gw.start()
    wait_for_port(port)
    return gw, port


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_a_clear_text_ehlo_behind_the_header_is_never_executed_and_a_client_hello_there_works(tmp_path):
    gw, port = _gateway(tmp_path)
    try:
        header = v1_header(("203.0.113.9", 51000), ("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(header + b"EHLO evil.example\r\nMAIL FROM:<ceo@corp.example>\r\n")
            answer = _read_all(s)
        # A TLS alert at most; never an SMTP reply.
        assert b"250" not in answer and b"220" not in answer and b"Hello" not in answer
        protocol_logs = b"".join(p.read_bytes() for p in (gw.var / "logs").rglob("RECV*.LOG"))
        assert b"evil.example" not in protocol_logs and b"ceo@corp.example" not in protocol_logs

        # A real client behind a balancer whose header and ClientHello share one write.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="mail.corp.example")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            s.sendall(header + outgoing.read())
            banner = b""
            while not banner.endswith(b"\r\n"):
                incoming.write(s.recv(65536))
                try:
                    tls.do_handshake()
                    banner += tls.read(4096)
                except ssl.SSLWantReadError:
                    pass
                if data := outgoing.read():
                    s.sendall(data)
        assert banner.startswith(b"220 mail.corp.example")
    finally:
        gw.stop()
