"""
What a frontend session needs for AUTH: the authenticator over the
configured backends, the brute-force throttle and the settings.

Built at start-up and again at each reload (backends and settings may
change); the throttle is handed over, so a reload never forgives a
brute-forcer.

`authenticate` is the one place failures are counted. They count per source
and per account: the account a backend found (users-file name, LDAP DN), so
every spelling of a login name that reaches one directory entry shares one
counter; the login name itself only while no backend has named an account.
A locked account is refused whatever the password, right or wrong, with the
same reply, so a guess made during a lockout teaches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, fail

from gateway.auth.identity import DirectoryUnavailable, Identity, LockedOut, UnauthorizedLogin, login_key
from gateway.auth.portal import Authenticator
from gateway.auth.throttle import AuthThrottle
from gateway.auth.users import UsersFile, UsersFileChecker
from gateway.config import AuthConfig


@dataclass
class AuthService:
    authenticator: Authenticator
    throttle: AuthThrottle
    config: AuthConfig

    def authenticate(self, username: str, password: str, source: str) -> Deferred:
        """
        An Identity, or the failure: UnauthorizedLogin (535) and LockedOut
        (454) always counted; DirectoryUnavailable (454) counted when an
        earlier backend refused the credentials (its `counted`).
        """
        key = login_key(username)
        locked = self.throttle.locked(source, key)
        if locked is not None:
            self.throttle.failed(source, key)
            return fail(LockedOut(f"AUTH locked out for this {locked}"))
        d = self.authenticator.login(username, password, source)
        return d.addCallbacks(self._succeeded, self._failed, (source,), None, (source, key))

    def _succeeded(self, identity: Identity, source: str) -> Identity:
        if self.throttle.user_locked(identity.account):
            self.throttle.failed(source, identity.account)
            raise LockedOut("AUTH locked out for this user")
        self.throttle.succeeded(source, identity.account)
        return identity

    def _failed(self, failure, source: str, key: str):
        refusal = failure.value
        if isinstance(refusal, DirectoryUnavailable):
            if not refusal.counted:
                return failure
            refusal = refusal.rejected
        elif not isinstance(refusal, UnauthorizedLogin):
            return failure
        account = getattr(refusal, "account", None) or key
        locked = self.throttle.user_locked(account)
        self.throttle.failed(source, account)
        if locked:
            raise LockedOut("AUTH locked out for this user")
        return failure


def build_auth(config: AuthConfig, reactor, run_in_thread, throttle: AuthThrottle | None = None) -> AuthService:
    checkers = []
    for backend in config.backends:
        if backend == "users_file":
            checkers.append((backend, UsersFileChecker(UsersFile(config.users_file), run_in_thread)))
        elif backend == "ldap":
            from gateway.auth.ldap import LDAPChecker

            checkers.append((backend, LDAPChecker(config.ldap, reactor)))
    if throttle is None:
        throttle = AuthThrottle(reactor, config.max_failures_per_source, config.max_failures_per_user, config.failure_window, config.lockout)
    else:
        throttle.max_per_source, throttle.max_per_user = config.max_failures_per_source, config.max_failures_per_user
        throttle.window, throttle.lockout = config.failure_window, config.lockout
    return AuthService(Authenticator(checkers), throttle, config)
