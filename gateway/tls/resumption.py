"""
TLS session resumption on the listeners, with ticket keys that rotate.

Devices that reconnect every few minutes (scanners, monitoring, cron) pay a
full handshake each time without resumption: an RSA signature on the server
and a key exchange on both sides. Both OpenSSL mechanisms are on: session
tickets (RFC 5077 / TLS 1.3 PSK tickets, the server keeps nothing) and the
session-ID cache (for TLS 1.2 clients that do not take tickets).

OpenSSL makes a context's ticket keys at random when the context is made and
keeps them in memory only; pyOpenSSL offers no call to replace them. So the
keys rotate by replacing the context: RotatingContext builds a fresh one
(fresh keys, empty session cache) once the current one has served for
`TICKET_KEY_LIFETIME`. A ticket from an older context then costs one full
handshake, and a stolen key opens at most that window's sessions. Sessions
already established keep the context they started with.

A session is resumable only on the context that made it: one connector's
certificate and TLS profile (gateway/tls/provider.py keys its cache by both),
in this process. Worker processes each have their own keys, so a client that
reconnects to another worker does a full handshake.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from OpenSSL import SSL

# How long one set of ticket keys issues and accepts tickets.
TICKET_KEY_LIFETIME = 6 * 3600.0
# The lifetime a session (ticket or cache entry) is given: OpenSSL's default.
SESSION_TIMEOUT = 2 * 3600


def enable_resumption(context: SSL.Context, timeout: int = SESSION_TIMEOUT) -> None:
    """Session IDs cached on the server, and session tickets (tickets are on unless OP_NO_TICKET)."""
    # Binds cached sessions to this context; random, as no other context may resume them.
    context.set_session_id(secrets.token_hex(16).encode("ascii"))
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    context.set_timeout(timeout)


class RotatingContext:
    """A context from `build`, replaced by a new one after `lifetime` seconds of `clock`."""

    def __init__(self, build: Callable[[], SSL.Context], clock, lifetime: float = TICKET_KEY_LIFETIME) -> None:
        self._build = build
        self._clock = clock
        self._lifetime = lifetime
        self._context: SSL.Context | None = None
        self._made = 0.0
        # The first build happens now, so an unusable key or certificate fails at configuration time.
        self.current()

    def current(self) -> SSL.Context:
        now = self._clock.seconds()
        if self._context is None or now - self._made >= self._lifetime:
            self._context = self._build()
            self._made = now
        return self._context
