"""
ALPN on the SMTP listeners: an offer is answered "no overlap", never an abort.

SMTP has no ALPN protocol id, yet many TLS stacks offer one anyway (testssl's
browser profiles offer h2 and http/1.1; `openssl s_client -alpn smtp`). RFC
7301 lets a server that selects nothing leave the extension unacknowledged,
and every SMTP server does. Twisted (through 26.x) installs a select callback
on each context it builds that returns b"" when nothing overlaps; pyOpenSSL
passes that to OpenSSL as "selected an empty protocol", and OpenSSL 3 aborts
the handshake with alert 80 (internal_error). The callback here returns
pyOpenSSL's NO_OVERLAPPING_PROTOCOLS sentinel, which becomes
SSL_TLSEXT_ERR_NOACK: the handshake goes on with no ALPN negotiated.
"""

from __future__ import annotations

from OpenSSL import SSL


# pyOpenSSL names the sentinel's type only privately; the annotation is never evaluated.
def select_none(connection: SSL.Connection, offered: list[bytes]) -> SSL._NoOverlappingProtocols:
    """Whatever the client offers: nothing selected, and the handshake continues."""
    return SSL.NO_OVERLAPPING_PROTOCOLS


def answer_no_overlap(context: SSL.Context) -> None:
    """Make every ALPN offer on connections of `context` go unacknowledged."""
    context.set_alpn_select_callback(select_none)
