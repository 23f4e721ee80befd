"""
TLS profiles of receive connectors: which versions and cipher suites a
connector's TLS accepts.

"modern" (the default) is TLS 1.2 and 1.3 with forward-secret AEAD suites
only (Mozilla "intermediate"), so `openssl s_client` and testssl show nothing
weak. "legacy" exists for printers and scanners whose firmware stops at TLS
1.0/1.1 or knows only RSA key exchange and CBC suites: it adds those suites,
allows TLS 1.0 by default, and lowers OpenSSL's security level as far as
they need (OpenSSL 3 refuses TLS 1.0/1.1 at level 1 and above, their
handshake signatures being SHA-1/MD5). The config check allows "legacy" and
a minimum below 1.2 only on a connector whose remote IP ranges are written
out and do not cover the whole Internet (gateway/config.py), so weak TLS is
offered only to the devices that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL

VERSIONS = {"1.0": SSL.TLS1_VERSION, "1.1": SSL.TLS1_1_VERSION, "1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
PROFILES = ("modern", "legacy")
# Versions below this weaken TLS: allowed only on a scoped connector.
SAFE_MIN_VERSION = "1.2"

MODERN_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
)
# Mozilla "old" without 3DES (Sweet32): ECDHE with CBC, then RSA key exchange.
LEGACY_EXTRA_CIPHERS = (
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"
    "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA"
)


@dataclass(frozen=True)
class TLSProfile:
    """What a connector's TLS accepts: a cipher profile and a minimum version."""

    cipher_profile: str = "modern"
    min_version: str = SAFE_MIN_VERSION

    @property
    def weakened(self) -> bool:
        return self.cipher_profile == "legacy" or self.min_version < SAFE_MIN_VERSION

    @property
    def cipher_string(self) -> str:
        if self.cipher_profile == "modern":
            return MODERN_TLS12_CIPHERS
        # Level 0 for TLS 1.0/1.1 handshakes; level 1 still admits RSA key exchange and CBC on TLS 1.2.
        level = 0 if self.min_version < SAFE_MIN_VERSION else 1
        return f"{MODERN_TLS12_CIPHERS}:{LEGACY_EXTRA_CIPHERS}:@SECLEVEL={level}"

    def apply(self, context: SSL.Context) -> None:
        """Set versions and TLS 1.2-and-below suites (TLS 1.3 suites are OpenSSL's, all AEAD)."""
        context.set_min_proto_version(VERSIONS[self.min_version])
        context.set_max_proto_version(0)  # 0: the highest this OpenSSL has
        context.set_cipher_list(self.cipher_string.encode("ascii"))


def default_min_version(cipher_profile: str) -> str:
    """"legacy" exists for TLS 1.0 devices, so it starts at 1.0 unless told otherwise."""
    return "1.0" if cipher_profile == "legacy" else SAFE_MIN_VERSION


def profile_for(connector) -> TLSProfile:
    return TLSProfile(connector.tls_cipher_profile, connector.tls_min_version)
