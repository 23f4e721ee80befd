"""
SASL PLAIN (RFC 4616) and LOGIN for SMTP AUTH (RFC 4954), as pure state machines.

A mechanism takes the client's responses (base64 text, as on the wire) and
answers with the next challenge or, at the end, the username and password.
It never touches the network or the credential store; the protocol feeds it
lines and hands the result to the authenticator. A `*` response cancels; an
initial response of `=` is an empty one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from gateway.errors import Reply, SMTPError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""


def _decode(text: str) -> str:
    text = text.strip()
    if text == "*":
        raise SMTPError(Reply.AUTH_CANCELLED, reason="client cancelled AUTH")
    if text == "=":
        return ""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SMTPError(Reply.AUTH_BAD_BASE64, reason="bad base64 in AUTH") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPError(Reply.AUTH_FAILED, reason="credentials not UTF-8") from None


class Plain:
    name = "PLAIN"

    def start(self, initial: str | None) -> str | Credentials:
        """The first step: an empty challenge, or the credentials from an initial response."""
        if initial is None:
            return ""
        return self.respond(initial)

    def respond(self, line: str) -> str | Credentials:
        parts = _decode(line).split("\0")
        if len(parts) != 3:
            raise SMTPError(Reply.AUTH_FAILED, reason="PLAIN response is not authzid NUL authcid NUL password")
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            # Acting as another user (proxy authorization) is not offered.
            raise SMTPError(Reply.AUTH_FAILED, reason="PLAIN authorization identity differs from the login")
        return Credentials(authcid, password)


class Login:
    name = "LOGIN"
    USERNAME = base64.b64encode(b"Username:").decode()
    PASSWORD = base64.b64encode(b"Password:").decode()

    def __init__(self) -> None:
        self.username: str | None = None

    def start(self, initial: str | None) -> str | Credentials:
        if initial is None:
            return self.USERNAME
        return self.respond(initial)

    def respond(self, line: str) -> str | Credentials:
        value = _decode(line)
        if self.username is None:
            self.username = value
            return self.PASSWORD
        return Credentials(self.username, value)


MECHANISMS = {"PLAIN": Plain, "LOGIN": Login}
