"""
Who an AUTH proved the client to be, and the errors a login can end in.

A credential backend (users file, LDAP) answers a login with an `Identity`:
the login name, the sender addresses it may use, and the networks it may
log in from. The session keeps it for send-as, per-user rate limits and the
trace headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.cred.error import UnauthorizedLogin

from gateway.auth.sendas import SenderPatterns
from gateway.connectors import IPRange


@dataclass(frozen=True)
class Identity:
    name: str
    send_as: SenderPatterns
    # Empty: from anywhere. Otherwise a right password from elsewhere fails.
    remote_ip_ranges: tuple[IPRange, ...] = ()
    backend: str = ""


def text_credentials(credentials) -> tuple[str, str]:
    """
    The user name and password of IUsernamePassword credentials as text.
    Not UTF-8, or empty, is UnauthorizedLogin for every backend: an empty
    password never proves anything (and an LDAP bind without one is anonymous).
    """
    try:
        name = credentials.username.decode("utf-8")
        password = credentials.password.decode("utf-8")
    except UnicodeDecodeError:
        raise UnauthorizedLogin("credentials are not UTF-8") from None
    if not name or not password:
        raise UnauthorizedLogin("empty user name or password")
    return name, password


class DirectoryUnavailable(Exception):
    """The backend could not answer (LDAP down or slow): a temporary failure, 454 4.7.0."""


class LockedOut(Exception):
    """The source or the user is locked out after too many failures: 454 4.7.0, counted as a failure."""


__all__ = ["Identity", "DirectoryUnavailable", "LockedOut", "UnauthorizedLogin", "text_credentials"]
