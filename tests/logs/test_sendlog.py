"""The SMTP Send Protocol Log of a delivery: AUTH written masked, TLS described (gateway/logs/sendlog.py)."""

import base64
import datetime

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.deliver.client import SMTPClient
from gateway.deliver.security import OutboundSecurity
from gateway.logs.protocol import ProtocolLog
from gateway.logs.sendlog import masked_auth, tls_events
from tests.logs.test_protocol import NOW, rows

PASSWORD = "S3cret-pw"


@pytest.mark.parametrize("line, shown", [
    ("AUTH PLAIN AHJlbGF5AFMzY3JldC1wdw==", "AUTH PLAIN ****"),
    ("AUTH LOGIN", "AUTH LOGIN"),
    ("AUTH LOGIN cmVsYXk=", "AUTH LOGIN ****"),
    ("cmVsYXk=", "****"),
    ("AUTH XOAUTH2 dXNlcj1yZWxheUBjb3JwLmV4YW1wbGUBYXV0aD1CZWFyZXIgZXlKMGVYQWkBAQ==", "AUTH XOAUTH2 ****"),
    ("AUTH OAUTHBEARER bixhPXJlbGF5QGNvcnAuZXhhbXBsZSwBYXV0aD1CZWFyZXIgZXlKMGVYQWkBAQ==", "AUTH OAUTHBEARER ****"),
])
def test_credentials_are_masked(line, shown):
    assert masked_auth(line) == shown


class _TLSTransport(StringTransport):
    """Records startTLS; the handshake itself is the integration test's (tests/integration/test_outbound.py)."""

    tls = None

    def startTLS(self, options):
        self.tls = options


def _session(tmp_path, mechanisms: bytes):
    clock = Clock()
    clock.advance(NOW)
    plog = ProtocolLog(tmp_path, "SEND", clock)
    client = SMTPClient(
        "out.corp.example", clock, 30, plog, "Smart host",
        OutboundSecurity("opportunistic", auth="BasicAuthRequireTLS", username="relay", password=PASSWORD), "relay.isp.example",
    )
    transport = _TLSTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 40000), peerAddress=IPv4Address("TCP", "127.0.0.1", 587))
    client.makeConnection(transport)
    client.dataReceived(b"220 relay ESMTP\r\n250-relay\r\n250 STARTTLS\r\n")
    client.dataReceived(b"220 2.0.0 go ahead\r\n")
    assert transport.tls is not None
    client.dataReceived(b"250-relay\r\n250 AUTH " + mechanisms + b"\r\n")
    return client, plog, transport


def _logged(tmp_path, plog, client) -> tuple[str, list]:
    client.connectionLost(None)
    plog.close()
    (path,) = list(tmp_path.iterdir())
    return path.read_text(), [(r[6], r[7]) for r in rows(path)[1]]


def test_auth_plain_is_logged_as_the_mechanism_and_stars(tmp_path):
    """The log shows the AUTH PLAIN command and the reply; neither the password nor its base64 token is in the file."""
    client, plog, transport = _session(tmp_path, b"PLAIN LOGIN")
    token = base64.b64encode(f"\0relay\0{PASSWORD}".encode())
    assert transport.value().endswith(b"AUTH PLAIN " + token + b"\r\n")
    client.dataReceived(b"235 2.7.0 Authentication successful\r\n")
    text, events = _logged(tmp_path, plog, client)
    assert events == [
        ("+", ""), ("<", "220 relay ESMTP"), (">", "EHLO out.corp.example"), ("<", "250-relay"), ("<", "250 STARTTLS"),
        (">", "STARTTLS"), ("<", "220 2.0.0 go ahead"), (">", "EHLO out.corp.example"), ("<", "250-relay"), ("<", "250 AUTH PLAIN LOGIN"),
        (">", "AUTH PLAIN ****"), ("<", "235 2.7.0 Authentication successful"), ("-", ""),
    ]
    assert PASSWORD not in text and token.decode() not in text
    assert base64.b64encode(PASSWORD.encode()).decode() not in text


def test_auth_login_answers_are_logged_as_stars(tmp_path):
    """Each AUTH LOGIN answer (user name, password) is `****`; the server's prompts stay."""
    client, plog, transport = _session(tmp_path, b"LOGIN")
    client.dataReceived(b"334 VXNlcm5hbWU6\r\n")
    client.dataReceived(b"334 UGFzc3dvcmQ6\r\n")
    assert transport.value().endswith(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    client.dataReceived(b"235 2.7.0 Authentication successful\r\n")
    text, events = _logged(tmp_path, plog, client)
    assert events[10:] == [
        (">", "AUTH LOGIN"), ("<", "334 VXNlcm5hbWU6"), (">", "****"), ("<", "334 UGFzc3dvcmQ6"), (">", "****"),
        ("<", "235 2.7.0 Authentication successful"), ("-", ""),
    ]
    assert PASSWORD not in text and base64.b64encode(PASSWORD.encode()).decode() not in text


def test_tls_events_name_version_cipher_and_the_next_hops_certificate():
    from OpenSSL import crypto

    from gateway.tls.store import make_self_signed, thumbprint

    pem = make_self_signed("CN=relay.isp.example", ("relay.isp.example",), datetime.datetime.now(datetime.UTC))
    peer = crypto.load_certificate(crypto.FILETYPE_PEM, pem[pem.index(b"-----BEGIN CERTIFICATE"):])

    class Connection:
        """What pyOpenSSL's Connection answers after a handshake."""

        def get_peer_certificate(self):
            return peer

        def get_protocol_version_name(self):
            return "TLSv1.3"

        def get_cipher_name(self):
            return "TLS_AES_256_GCM_SHA384"

    assert tls_events(Connection()) == [
        ("", "Received certificate"),
        ("CN=relay.isp.example", "Certificate subject"),
        ("CN=relay.isp.example", "Certificate issuer name"),
        (thumbprint(peer.to_cryptography()), "Certificate thumbprint"),
        ("TLSv1.3 TLS_AES_256_GCM_SHA384", "TLS negotiation succeeded"),
    ]
