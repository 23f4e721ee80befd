"""
Opportunistic TLS to a next hop (a send connector's `tls = "opportunistic"`,
Exchange's default, Postfix's `may` level).

Opportunistic TLS only guards against passive eavesdropping, and its
alternative is clear text. So it takes whatever TLS the peer has: TLS 1.0
and 1.1, and the older ciphers and SHA-1 signatures that OpenSSL 3 refuses
at its default security level (hence `@SECLEVEL=0`, and servers without
secure renegotiation). The certificate is not checked (there is no name to
hold it to). A handshake that still fails means the peer's TLS is broken,
not that someone forbids clear text: the connection is made again to the
same address without STARTTLS, in the same delivery attempt
(`OpportunisticTLSFailed`, handled in `gateway.deliver.client.connect`).

A send connector's client certificate (`tls_client_certificate_name`) is
shown here too: a partner that asks for one gets it, whatever else it
checks. Such connections get a context of their own (one per certificate).

None of this applies to `tls = "required"`: its certificate is verified, its
protocol floor stays at Twisted's default, and a failed handshake defers the
message.
"""

from __future__ import annotations

import ipaddress

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

# Every encrypting cipher OpenSSL still has, at the security level that allows TLS 1.0/1.1.
CIPHERS = b"ALL:!eNULL:@SECLEVEL=0"


class OpportunisticTLSFailed(Exception):
    """The STARTTLS handshake (or the EHLO inside it) failed on an opportunistic connection."""


def _context(client_certificate=None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_cipher_list(CIPHERS)
    # Old servers lack RFC 5746 secure renegotiation, which OpenSSL 3 requires by default.
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_LEGACY_SERVER_CONNECT)
    context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
    if client_certificate is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        context.use_certificate(client_certificate.certificate)
        # The certificate store keeps only keys that belong to a certificate, which OpenSSL can use.
        context.use_privatekey(load_pem_private_key(client_certificate.key_pem, password=None))  # type: ignore[arg-type]
        for extra in client_certificate.chain:
            context.add_extra_chain_cert(extra)
    return context


_shared: SSL.Context | None = None
# Contexts that present a client certificate, by the certificate's thumbprint.
_with_certificate: dict[str, SSL.Context] = {}


def shared_context() -> SSL.Context:
    """One context for every opportunistic connection (it holds no per-peer state)."""
    global _shared
    if _shared is None:
        _shared = _context()
    return _shared


@implementer(IOpenSSLClientConnectionCreator)
class OpportunisticTLS:
    """Client TLS for `host_name` with any protocol version and certificate; SNI when it is a name."""

    def __init__(self, host_name: str, client_certificate=None) -> None:
        self.host_name = host_name
        # A StoredCertificate (with key and chain) to present, or None.
        self.client_certificate = client_certificate

    def _context(self) -> SSL.Context:
        certificate = self.client_certificate
        if certificate is None:
            return shared_context()
        context = _with_certificate.get(certificate.thumbprint)
        if context is None:
            if len(_with_certificate) > 64:
                _with_certificate.clear()
            context = _with_certificate[certificate.thumbprint] = _context(certificate)
        return context

    def clientConnectionForTLS(self, tls_protocol) -> SSL.Connection:
        connection = SSL.Connection(self._context(), None)
        name = self.host_name.rstrip(".")
        try:
            ipaddress.ip_address(name)
        except ValueError:
            try:
                sni = name.encode("idna")
            except UnicodeError:
                # Not a name a certificate could carry (a label over 63 octets): no SNI, the handshake still goes on.
                sni = b""
            if sni:
                connection.set_tlsext_host_name(sni)
        return connection
