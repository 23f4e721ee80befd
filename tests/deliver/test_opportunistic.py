"""
Opportunistic TLS to a next hop: any TLS version the peer has, and a failed
handshake retried in clear on a new connection (never for "required").
"""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from gateway.deliver.client import SMTPClient, connect
from gateway.deliver.opportunistic import OpportunisticTLS, OpportunisticTLSFailed
from gateway.deliver.security import OutboundSecurity
from gateway.tls.store import make_self_signed


def _server_context(version: int) -> SSL.Context:
    pem = make_self_signed("CN=old.hop.example", ("old.hop.example",), datetime.datetime.now(datetime.UTC))
    context = SSL.Context(SSL.TLS_METHOD)
    context.use_privatekey(load_pem_private_key(pem, None))
    context.use_certificate(x509.load_pem_x509_certificate(pem))
    context.set_min_proto_version(version)
    context.set_max_proto_version(version)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return context


def _handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Pump bytes between two memory-BIO connections until both finish the handshake."""
    client.set_connect_state()
    server.set_accept_state()
    done = set()
    for _ in range(20):
        for side in (client, server):
            try:
                side.do_handshake()
                done.add(side)
            except SSL.WantReadError:
                pass
        if len(done) == 2:
            return
        for a, b in ((client, server), (server, client)):
            try:
                b.bio_write(a.bio_read(65536))
            except SSL.WantReadError:
                pass
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("version,name", [(SSL.TLS1_VERSION, "TLSv1"), (SSL.TLS1_1_VERSION, "TLSv1.1"), (SSL.TLS1_2_VERSION, "TLSv1.2")])
def test_opportunistic_tls_completes_a_handshake_with_a_peer_that_has_only_an_old_version(version, name):
    """The creator the client hands to startTLS: TLS 1.0 and 1.1 (SHA-1, SECLEVEL 0) work, with SNI, any certificate."""
    creator = OutboundSecurity("opportunistic").tls_options("old.hop.example")
    assert isinstance(creator, OpportunisticTLS)
    client = creator.clientConnectionForTLS(None)
    server = SSL.Connection(_server_context(version), None)
    _handshake(client, server)
    assert client.get_protocol_version_name() == name
    assert server.get_servername() == b"old.hop.example"


def test_no_sni_for_an_address_literal():
    client = OpportunisticTLS("192.0.2.25").clientConnectionForTLS(None)
    server = SSL.Connection(_server_context(SSL.TLS1_2_VERSION), None)
    client.set_connect_state()
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    server.bio_write(client.bio_read(65536))
    server.set_accept_state()
    try:
        server.do_handshake()
    except SSL.WantReadError:
        pass
    assert server.get_servername() is None


class _TLSTransport(StringTransport):
    tls = None

    def startTLS(self, options):
        self.tls = options


def _after_starttls(level: str):
    c = SMTPClient("hub.corp.example", Clock(), timeout=30, security=OutboundSecurity(level), peer_name="old.hop.example")
    t = _TLSTransport()
    c.makeConnection(t)
    outcome = []
    c.ready.addBoth(outcome.append)
    c.dataReceived(b"220 old ESMTP\r\n250-old\r\n250 STARTTLS\r\n")
    c.dataReceived(b"220 2.0.0 go ahead\r\n")
    assert t.value() == b"EHLO hub.corp.example\r\nSTARTTLS\r\nEHLO hub.corp.example\r\n"
    return c, outcome


def test_a_handshake_failure_on_an_opportunistic_connection_is_reported_as_such():
    """The connection dies inside the handshake: ready fails with OpportunisticTLSFailed, which connect retries in clear."""
    c, outcome = _after_starttls("opportunistic")
    c.connectionLost(Failure(SSL.Error([("SSL routines", "", "wrong version number")])))
    assert outcome[0].check(OpportunisticTLSFailed)
    assert "TLS with old.hop.example failed" in outcome[0].getErrorMessage()


def test_a_handshake_failure_with_tls_required_stays_a_plain_failure():
    c, outcome = _after_starttls("required")
    c.connectionLost(Failure(SSL.Error([("SSL routines", "", "wrong version number")])))
    assert outcome[0].check(SSL.Error) and not outcome[0].check(OpportunisticTLSFailed)


def _accept(reactor: MemoryReactorClock, index: int) -> tuple[SMTPClient, StringTransport]:
    """Complete the index-th connectTCP on the memory reactor with a transport of our own."""
    host, port, factory, _, _ = reactor.tcpClients[index]
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = _TLSTransport(peerAddress=IPv4Address("TCP", host, port))
    protocol.makeConnection(transport)
    return protocol, transport


def test_connect_retries_the_same_address_in_clear_after_a_failed_opportunistic_handshake():
    """Same attempt, same host and port: the second connection never says STARTTLS and is what the caller gets."""
    reactor = MemoryReactorClock()
    got = []
    connect(reactor, "192.0.2.25", 25, "hub.corp.example", 30, security=OutboundSecurity("opportunistic")).addBoth(got.append)
    first, t1 = _accept(reactor, 0)
    first.dataReceived(b"220 old ESMTP\r\n250-old\r\n250 STARTTLS\r\n220 go ahead\r\n")
    assert t1.value() == b"EHLO hub.corp.example\r\nSTARTTLS\r\nEHLO hub.corp.example\r\n"
    first.connectionLost(Failure(SSL.Error([("SSL routines", "", "unexpected eof")])))
    assert got == [] and len(reactor.tcpClients) == 2
    assert reactor.tcpClients[1][:2] == ("192.0.2.25", 25)
    second, t2 = _accept(reactor, 1)
    second.dataReceived(b"220 old ESMTP\r\n250-old\r\n250 STARTTLS\r\n")
    assert t2.value() == b"EHLO hub.corp.example\r\n" and t2.tls is None
    assert len(got) == 1 and got[0].tls_active is False and got[0].security.tls == "none"


def test_connect_does_not_retry_in_clear_when_tls_is_required():
    reactor = MemoryReactorClock()
    got = []
    connect(reactor, "192.0.2.25", 25, "hub.corp.example", 30, security=OutboundSecurity("required")).addBoth(got.append)
    first, _ = _accept(reactor, 0)
    first.dataReceived(b"220 hop ESMTP\r\n250-hop\r\n250 STARTTLS\r\n220 go ahead\r\n")
    first.connectionLost(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")])))
    assert len(reactor.tcpClients) == 1 and got[0].check(SSL.Error)


def test_a_name_no_certificate_could_carry_gets_no_sni_instead_of_a_failed_connection():
    client = OpportunisticTLS("x" * 64 + ".example").clientConnectionForTLS(None)
    server = SSL.Connection(_server_context(SSL.TLS1_2_VERSION), None)
    _handshake(client, server)
    assert server.get_servername() is None
