"""
Server-side TLS settings: one policy for every connector.

TLS 1.2 and 1.3 only; for TLS 1.2, forward-secret AEAD ciphers only (the
Mozilla "intermediate" list), so `openssl s_client` shows nothing weak.
Devices too old for that cannot use TLS here; they belong on an
IP-restricted connector on port 25, not on a weakened 587.
"""

from __future__ import annotations

from OpenSSL import crypto
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion

from gateway.tls.store import StoredCertificate

TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
)


def server_options(cert: StoredCertificate) -> CertificateOptions:
    """The context factory for `transport.startTLS` / a TLS listener serving this certificate."""
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, cert.key_pem)
    from cryptography.hazmat.primitives import serialization

    def x509(c):
        return crypto.load_certificate(crypto.FILETYPE_PEM, c.public_bytes(serialization.Encoding.PEM))

    return CertificateOptions(
        privateKey=key,
        certificate=x509(cert.certificate),
        extraCertChain=[x509(c) for c in cert.chain],
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
    )
