"""
The client side of the SASL mechanisms for bearer tokens: XOAUTH2 (the
profile Microsoft 365 and Gmail speak) and OAUTHBEARER (RFC 7628).

The exchange: `AUTH <mech> <initial response>` carrying the token. A good
token gets 235. A refused one gets a 334 whose base64 payload is a JSON
error (`{"status":"401","schemes":"bearer","scope":"..."}`); the client
answers with an empty line (XOAUTH2) or %x01 (OAUTHBEARER, RFC 7628 3.2.3)
and the server ends with a 535 (or 454). The decoded JSON goes into the
reply the queue keeps as LastError, so an admin sees why.

A refused token is dropped from the connector's cache and a fresh one is
fetched and tried once more on the same session: tokens revoked or rotated
early look exactly like this. A second refusal defers the message.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from gateway.errors import SMTPReply

MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# The decoded error a server sends is shown up to this many characters.
MAX_ERROR_SHOWN = 500


def initial_response(mechanism: str, user: str, token: str, host: str = "", port: int = 0) -> str:
    """The base64 initial response carrying the token."""
    if mechanism == "XOAUTH2":
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        # RFC 7628 3.1: gs2 header (no channel binding, authzid = user), then key/value pairs.
        pairs = f"host={host}\x01port={port}\x01" if host else ""
        raw = f"n,a={_saslname(user)},\x01{pairs}auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def _saslname(user: str) -> str:
    """RFC 5801's saslname: ',' and '=' escaped."""
    return user.replace("=", "=3D").replace(",", "=2C")


def decode_challenge(text: str) -> str:
    """A 334's payload as the server meant it: the decoded JSON error (printable, bounded), or the text as sent."""
    payload = text.strip()
    try:
        decoded = base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = payload
    shown = "".join(ch if ch.isprintable() else "?" for ch in decoded)
    return shown[:MAX_ERROR_SHOWN]


def error_response(mechanism: str) -> str:
    """What the client answers to an error challenge, so the server sends its final reply."""
    return "" if mechanism == "XOAUTH2" else "AQ=="


class OAuthLogin:
    """
    One AUTH exchange on a session. `send(line, shown)` writes a command
    (logged as `shown`) and fires with its reply; `tokens` is the
    connector's ITokenSource. `run()` fires with the final reply: 235, or a
    refusal whose text carries the server's decoded error.
    """

    def __init__(self, send, tokens, mechanism: str, user: str, host: str = "", port: int = 0) -> None:
        self.send = send
        self.tokens = tokens
        self.mechanism = mechanism
        self.user = user
        self.host = host
        self.port = port

    @inlineCallbacks
    def run(self) -> Generator[Deferred[Any], Any, SMTPReply]:
        token = yield self.tokens.get()
        reply = yield self._try(token)
        if not self._token_refused(reply):
            return reply
        # The token was refused: drop it, fetch a fresh one and try that once.
        self.tokens.invalidate(token)
        token = yield self.tokens.get()
        return (yield self._try(token))

    @staticmethod
    def _token_refused(reply: SMTPReply) -> bool:
        # 535 (RFC 4954: credentials invalid) and 454 4.7.0 (temporary auth failure) may be a lapsed token.
        return reply.code in (535, 454)

    @inlineCallbacks
    def _try(self, token: str) -> Generator[Deferred[Any], Any, SMTPReply]:
        line = f"AUTH {self.mechanism} {initial_response(self.mechanism, self.user, token, self.host, self.port)}"
        reply = yield self.send(line, f"AUTH {self.mechanism} ****")
        if reply.code != 334:
            return reply
        error = decode_challenge(reply.text)
        final = yield self.send(error_response(self.mechanism), "")
        if final.code == 235:
            return final
        return SMTPReply(final.code if final.code >= 400 else 535, final.enhanced, f"{final.text}; server said: {error}")
