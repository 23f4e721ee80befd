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
    # The account behind the login name (users-file name, LDAP DN): what
    # lockouts and rate limits count, so `scanner1` and `SCANNER1@corp.example`
    # reaching one directory entry share one counter. Default: the name.
    canonical: str = ""

    @property
    def account(self) -> str:
        return self.canonical or self.name.lower()


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
    refuse_padded_name(name)
    return name, password


def refuse_padded_name(name: str) -> None:
    """
    UnauthorizedLogin for a name with white space around it. Directories
    ignore surrounding spaces in a lookup; a name with them is a variant made
    to get counters of its own (and, through the credential cache, a
    remembered success under another spelling). AuthService asks this before
    the cache, text_credentials before every backend.
    """
    if name != name.strip():
        raise UnauthorizedLogin("white space around the user name")


def login_key(name: str) -> str:
    """What the throttle counts a login name under before its account is known."""
    return name.strip().lower()


class WrongPassword(UnauthorizedLogin):
    """The backend knows the account and the password is not its password: counted against the account."""

    def __init__(self, account: str, message: str = "wrong password") -> None:
        super().__init__(message)
        self.account = account


class DirectoryUnavailable(Exception):
    """
    The backend could not answer (LDAP down or slow): a temporary failure,
    454 4.7.0. `rejected` is an earlier backend's refusal of the same
    credentials: the attempt then counts and is tarpitted like any failed
    login, or an outage of the last backend would make the first one's
    lockout free to bypass.
    """

    def __init__(self, message: str = "", rejected: UnauthorizedLogin | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected

    @property
    def counted(self) -> bool:
        return self.rejected is not None


class LockedOut(Exception):
    """The source or the user is locked out after too many failures: 454 4.7.0, counted as a failure."""


__all__ = ["Identity", "DirectoryUnavailable", "LockedOut", "UnauthorizedLogin", "WrongPassword", "login_key", "refuse_padded_name", "text_credentials"]
