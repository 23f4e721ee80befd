"""
The server side of TLS for one connector: certificate, profile, resumption,
ALPN.

The pyOpenSSL context is built here rather than by Twisted's
CertificateOptions: that class gives no way to set OpenSSL's security level
(needed by the legacy profile), and on OpenSSL 3 its ALPN callback aborts
every handshake that offers ALPN (gateway/tls/alpn.py). ServerTLS provides
Twisted's public IOpenSSLServerConnectionCreator, which `transport.startTLS`
and TLS listeners take directly.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from gateway.tls.alpn import answer_no_overlap
from gateway.tls.profiles import TLSProfile
from gateway.tls.resumption import TICKET_KEY_LIFETIME, RotatingContext, enable_resumption
from gateway.tls.store import StoredCertificate

# Compression off (CRIME), the server's cipher order, no renegotiation (a client-driven CPU cost and old attack surface).
OPTIONS = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION


def server_context(cert: StoredCertificate, profile: TLSProfile = TLSProfile(), resumption: bool = True) -> SSL.Context:
    """A new OpenSSL context serving `cert` under `profile`."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_options(OPTIONS)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # One certificate per key type (RSA, ECDSA): OpenSSL serves the one the client's
    # signature algorithms and the agreed suite allow, ECDSA first (gateway/tls/store.py).
    # The companions go in first so that the file's own certificate is the context's current one.
    for served in (*cert.companions, cert):
        # The store keeps only keys that belong to a certificate, which OpenSSL can use.
        ctx.use_certificate(served.certificate)
        ctx.use_privatekey(serialization.load_pem_private_key(served.key_pem, password=None))  # type: ignore[arg-type]
        ctx.check_privatekey()
    # The context's chain, sent with whichever certificate is served.
    for extra in cert.chain:
        ctx.add_extra_chain_cert(extra)
    profile.apply(ctx)
    answer_no_overlap(ctx)
    if resumption:
        enable_resumption(ctx)
    else:
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """What `transport.startTLS` takes for a connector: one connection per handshake, on the current context."""

    def __init__(self, cert: StoredCertificate, clock, profile: TLSProfile = TLSProfile(), resumption: bool = True,
                 key_lifetime: float = TICKET_KEY_LIFETIME) -> None:
        self.certificate = cert
        self.profile = profile
        self._contexts = RotatingContext(lambda: server_context(cert, profile, resumption), clock, key_lifetime)

    def context(self) -> SSL.Context:
        return self._contexts.current()

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return SSL.Connection(self._contexts.current(), None)

