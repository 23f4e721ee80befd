"""
The server TLS context, handshaken in memory against Python's ssl module (a
real OpenSSL client): ALPN offers, TLS profiles, session resumption, key rotation.
"""

import datetime
import ssl
import warnings

import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.task import Clock

from gateway.tls.context import ServerTLS
from gateway.tls.profiles import MODERN_TLS12_CIPHERS, TLSProfile
from gateway.tls.store import CertificateStore, make_self_signed

# A refused handshake fails on one side or the other, depending on who notices first.
REFUSED = (ssl.SSLError, SSL.Error)
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return CertificateStore(tmp_path_factory.mktemp("certs")).write(make_self_signed("CN=mail.corp.example", (), NOW))


def client_context(alpn=None, version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1, which the old devices have
            ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(server: ServerTLS, ctx: ssl.SSLContext, session=None):
    """Run a full handshake in memory; return the client's SSLObject (after reading what the server sent, tickets included)."""
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(c_in, c_out, server_hostname="mail.corp.example", session=session)
    conn = server.serverConnectionForTLS(None)
    conn.set_accept_state()
    done = False
    for _ in range(20):
        try:
            client.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            pass
        data = c_out.read()
        if data:
            conn.bio_write(data)
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            pass
        # The server says something first, as an SMTP banner does; TLS 1.3 tickets travel with it.
        if done:
            conn.send(b"220 ready\r\n")
        try:
            while True:
                c_in.write(conn.bio_read(65536))
        except SSL.WantReadError:
            pass
        if done:
            assert client.read(100) == b"220 ready\r\n"
            return client, conn
    raise AssertionError("handshake did not finish")


def test_a_client_offering_alpn_completes_the_handshake_with_no_protocol_selected(cert):
    """OpenSSL 3 aborted these handshakes with alert 80 when the server 'selected' an empty protocol (issue 18 item 3)."""
    server = ServerTLS(cert, Clock())
    for offer in (["smtp"], ["h2", "http/1.1"]):
        client, conn = handshake(server, client_context(alpn=offer))
        assert client.selected_alpn_protocol() is None
        assert conn.get_alpn_proto_negotiated() == b""
        assert client.version() == "TLSv1.3"


def test_the_modern_profile_refuses_tls_1_0_and_rsa_key_exchange(cert):
    server = ServerTLS(cert, Clock())
    with pytest.raises(REFUSED):
        handshake(server, client_context(version=ssl.TLSVersion.TLSv1, ciphers="DEFAULT@SECLEVEL=0"))
    with pytest.raises(REFUSED):
        handshake(server, client_context(version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA:AES256-GCM-SHA384@SECLEVEL=0"))
    client, _ = handshake(server, client_context(version=ssl.TLSVersion.TLSv1_2))
    assert client.cipher()[0] in MODERN_TLS12_CIPHERS.split(":")


def test_the_legacy_profile_takes_a_tls_1_0_client_with_rsa_key_exchange_and_cbc(cert):
    server = ServerTLS(cert, Clock(), TLSProfile("legacy", "1.0"))
    client, _ = handshake(server, client_context(version=ssl.TLSVersion.TLSv1, ciphers="AES128-SHA@SECLEVEL=0"))
    assert client.version() == "TLSv1" and client.cipher()[0] == "AES128-SHA"
    client, _ = handshake(server, client_context(version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT@SECLEVEL=0"))
    assert client.version() == "TLSv1.1"
    # A modern client still gets the best the server has.
    client, _ = handshake(server, client_context())
    assert client.version() == "TLSv1.3"


def test_a_legacy_profile_with_a_raised_minimum_refuses_below_it(cert):
    server = ServerTLS(cert, Clock(), TLSProfile("legacy", "1.2"))
    with pytest.raises(REFUSED):
        handshake(server, client_context(version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT@SECLEVEL=0"))
    client, _ = handshake(server, client_context(version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA"))
    assert client.cipher()[0] == "AES128-SHA"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_second_connection_with_the_saved_session_resumes(cert, version):
    server, ctx = ServerTLS(cert, Clock()), client_context(version=version)
    first, _ = handshake(server, ctx)
    assert not first.session_reused
    second, _ = handshake(server, ctx, session=first.session)
    assert second.session_reused


def test_ticket_keys_rotate_and_a_session_from_before_the_rotation_does_a_full_handshake(cert):
    clock = Clock()
    server, ctx = ServerTLS(cert, clock, key_lifetime=3600), client_context()
    first, _ = handshake(server, ctx)
    clock.advance(1800)
    again, _ = handshake(server, ctx, session=first.session)
    assert again.session_reused
    before = server.context()
    clock.advance(1800)
    assert server.context() is not before
    after, _ = handshake(server, ctx, session=first.session)
    assert not after.session_reused
    # The new keys resume their own sessions.
    assert handshake(server, ctx, session=after.session)[0].session_reused


def test_resumption_can_be_turned_off_for_measurement(cert):
    server, ctx = ServerTLS(cert, Clock(), resumption=False), client_context()
    first, _ = handshake(server, ctx)
    assert not handshake(server, ctx, session=first.session)[0].session_reused


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return CertificateStore(tmp_path_factory.mktemp("pair")).ensure_default("mail.corp.example", NOW)


def _served(server, ctx, cert):
    client, conn = handshake(server, ctx)
    served = cert.served(conn)
    assert client.getpeercert(binary_form=True) == served.certificate.public_bytes(serialization.Encoding.DER)
    return client, served.key_type


def test_a_pair_serves_ecdsa_to_who_offers_it_and_rsa_to_the_rest(pair):
    server = ServerTLS(pair, Clock())
    for version in (None, ssl.TLSVersion.TLSv1_2):
        assert _served(server, client_context(version=version), pair)[1] == "ECDSA"
    client, key_type = _served(server, client_context(version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256"), pair)
    assert key_type == "RSA" and client.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"


def test_a_pair_on_the_legacy_profile_still_takes_tls_1_0_with_rsa_key_exchange(pair):
    server = ServerTLS(pair, Clock(), TLSProfile("legacy", "1.0"))
    client, key_type = _served(server, client_context(version=ssl.TLSVersion.TLSv1, ciphers="AES128-SHA@SECLEVEL=0"), pair)
    assert (client.version(), client.cipher()[0], key_type) == ("TLSv1", "AES128-SHA", "RSA")
    assert _served(server, client_context(), pair)[1] == "ECDSA"


def test_an_rsa_only_certificate_is_served_as_before(cert):
    client, key_type = _served(ServerTLS(cert, Clock()), client_context(), cert)
    assert key_type == "RSA" and client.version() == "TLSv1.3"
