"""
AUTH through twisted.cred: a portal over the configured backends, in order.

The SMTP side only calls `Authenticator.login(user, password, client_ip)`
and gets an `Identity`, or UnauthorizedLogin (535), or DirectoryUnavailable
(454). Backends are tried in the configured order: the first that accepts
wins; if none does and one of them could not answer, the failure is
temporary, so a directory outage never reads as a wrong password to a
device that would then give up (or lock its account). A refusal by an
earlier backend still counts toward lockout (DirectoryUnavailable.rejected),
so a directory outage is not a way around the users file's lockout.

Credentials bound to networks are checked here, after the password: a
right password from outside the user's ranges fails exactly like a wrong
one, on the wire and in the failure count.
"""

from __future__ import annotations

from ipaddress import ip_address

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from zope.interface import Interface, implementer

from gateway.auth.identity import DirectoryUnavailable, Identity, WrongPassword

log = Logger(namespace="exgateway.auth")


class ISubmitter(Interface):
    """The avatar of an authenticated SMTP client: its Identity."""


@implementer(IRealm)
class SubmitterRealm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        if ISubmitter not in interfaces:
            raise NotImplementedError("exgateway's realm only has SMTP submitters")
        return ISubmitter, avatarId, lambda: None


@implementer(ICredentialsChecker)
class ChainedChecker:
    """Ask each backend in turn; see the module docstring for what a failure means."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checkers: list[tuple[str, ICredentialsChecker]]) -> None:
        self.checkers = checkers

    @inlineCallbacks
    def requestAvatarId(self, credentials):
        unavailable = rejected = None
        # Why each backend said no (wrong password, no such user), for the log: never for the client.
        refusals = []
        for name, checker in self.checkers:
            try:
                identity = yield checker.requestAvatarId(credentials)
            except UnauthorizedLogin as e:
                # The first refusal by a backend that knows the account says whose count it is.
                if rejected is None or (isinstance(e, WrongPassword) and not isinstance(rejected, WrongPassword)):
                    rejected = e
                refusals.append((name, str(e) or "refused"))
                continue
            except DirectoryUnavailable as e:
                log.warn("credential backend {backend} unavailable: {error}", backend=name, error=str(e))
                unavailable = e
                continue
            return identity
        if unavailable is not None:
            raise DirectoryUnavailable(str(unavailable), rejected)
        if isinstance(rejected, WrongPassword):
            raise rejected
        if len(refusals) == 1:
            raise UnauthorizedLogin(refusals[0][1])
        raise UnauthorizedLogin("; ".join(f"{name}: {why}" for name, why in refusals) or "no backend accepted the credentials")


class Authenticator:
    def __init__(self, checkers: list[tuple[str, ICredentialsChecker]]) -> None:
        self.portal = Portal(SubmitterRealm(), [ChainedChecker(checkers)])

    def login(self, username: str, password: str, client_ip: str) -> Deferred:
        return self.verify(username, password).addCallback(self.from_network, client_ip)

    def verify(self, username: str, password: str) -> Deferred:
        """The password alone (what the credential cache may stand in for): an Identity, or the failure."""
        creds = UsernamePassword(username.encode("utf-8"), password.encode("utf-8"))
        return self.portal.login(creds, None, ISubmitter).addCallback(lambda result: result[1])

    @staticmethod
    def from_network(identity: Identity, client_ip: str) -> Identity:
        """The user's `remote_ip_ranges`, applied to every login, verified now or remembered."""
        if identity.remote_ip_ranges:
            address = ip_address(client_ip)
            if not any(r.contains(address) for r in identity.remote_ip_ranges):
                log.info("right password for {user} from {client_ip}, outside its remote_ip_ranges: refused",
                         user=identity.name, client_ip=client_ip)
                raise UnauthorizedLogin("outside the user's networks")
        return identity
