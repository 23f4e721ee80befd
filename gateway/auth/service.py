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

The credential cache (credcache.py) stands in for the password check only
(argon2, the LDAP bind): the lockout checks, the user's networks and the
counting run on every login, remembered or not, and a remembered failure is
a failure like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed

from gateway.auth.credcache import DEFAULT_NEGATIVE_TTL, CredentialCache
from gateway.auth.identity import DirectoryUnavailable, Identity, LockedOut, UnauthorizedLogin, login_key, refuse_padded_name
from gateway.auth.portal import Authenticator
from gateway.auth.throttle import AuthThrottle
from gateway.auth.users import UsersFile, UsersFileChecker
from gateway.config import AuthConfig


@dataclass
class AuthService:
    authenticator: Authenticator
    throttle: AuthThrottle
    config: AuthConfig
    cache: CredentialCache | None = None

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
        d = self._verify(username, password)
        d.addCallback(self.authenticator.from_network, source)
        return d.addCallbacks(self._succeeded, self._failed, callbackArgs=(source,), errbackArgs=(source, key))

    def _verify(self, username: str, password: str) -> Deferred:
        """The password check: remembered (credcache.py) or done now by the backends."""
        cache = self.cache
        if cache is None:
            return self.authenticator.verify(username, password)
        try:
            # Before the cache: " alice" must not hit alice's remembered success (535, as uncached).
            refuse_padded_name(username)
        except UnauthorizedLogin:
            return fail()
        cache_key, generation, answer = cache.lookup(username, password)
        if isinstance(answer, Identity):
            return succeed(answer)
        if answer is not None:
            return fail(answer)
        d = self.authenticator.verify(username, password)
        d.addCallbacks(self._remember, self._remember_failure, callbackArgs=(cache, cache_key, generation),
                       errbackArgs=(cache, cache_key, generation))
        return d

    @staticmethod
    def _remember(identity: Identity, cache: CredentialCache, cache_key: bytes, generation: int) -> Identity:
        cache.remember(cache_key, generation, identity)
        return identity

    @staticmethod
    def _remember_failure(failure, cache: CredentialCache, cache_key: bytes, generation: int):
        # A refusal is remembered; a directory that could not answer is not (the next login asks again).
        if failure.check(UnauthorizedLogin):
            cache.remember(cache_key, generation, failure.value)
        return failure

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


def build_auth(
    config: AuthConfig, reactor, verify_in_thread, throttle: AuthThrottle | None = None, ipv6_prefix: int = 64
) -> AuthService:
    """
    `verify_in_thread` runs argon2 (gateway/auth/verifypool.py: a bounded pool of its own). The
    credential cache starts empty at each reload: backends, users file and TTL may have changed.
    """
    checkers: list[tuple[str, ICredentialsChecker]] = []
    cache = CredentialCache(reactor, config.credential_cache_ttl, DEFAULT_NEGATIVE_TTL)
    for backend in config.backends:
        if backend == "users_file":
            users_file = UsersFile(config.users_file)
            cache.watch(users_file)
            checkers.append((backend, UsersFileChecker(users_file, verify_in_thread)))
        elif backend == "ldap":
            from gateway.auth.ldap import LDAPChecker

            # Config refuses the ldap backend without an [authentication.ldap] section.
            assert config.ldap is not None
            checkers.append((backend, LDAPChecker(config.ldap, reactor)))
    if throttle is None:
        throttle = AuthThrottle(
            reactor, config.max_failures_per_source, config.max_failures_per_user, config.failure_window, config.lockout, ipv6_prefix
        )
    else:
        throttle.max_per_source, throttle.max_per_user = config.max_failures_per_source, config.max_failures_per_user
        throttle.window, throttle.lockout = config.failure_window, config.lockout
    return AuthService(Authenticator(checkers), throttle, config, cache if config.credential_cache_ttl > 0 else None)
