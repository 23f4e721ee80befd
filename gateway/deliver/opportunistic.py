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


def _context() -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_cipher_list(CIPHERS)
    # Old servers lack RFC 5746 secure renegotiation, which OpenSSL 3 requires by default.
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_LEGACY_SERVER_CONNECT)
    context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
    return context


_shared: SSL.Context | None = None


def shared_context() -> SSL.Context:
    """One context for every opportunistic connection (it holds no per-peer state)."""
    global _shared
    if _shared is None:
        _shared = _context()
    return _shared


@implementer(IOpenSSLClientConnectionCreator)
class OpportunisticTLS:
    """Client TLS for `host_name` with any protocol version and certificate; SNI when it is a name."""

    def __init__(self, host_name: str) -> None:
        self.host_name = host_name

    def clientConnectionForTLS(self, tls_protocol) -> SSL.Connection:
        connection = SSL.Connection(shared_context(), None)
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
