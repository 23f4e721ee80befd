"""
What a frontend session needs for AUTH: the authenticator over the
configured backends, the brute-force throttle and the settings.

Built at start-up and again at each reload (backends and settings may
change); the throttle is handed over, so a reload never forgives a
brute-forcer.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth.portal import Authenticator
from gateway.auth.throttle import AuthThrottle
from gateway.auth.users import UsersFile, UsersFileChecker
from gateway.config import AuthConfig


@dataclass
class AuthService:
    authenticator: Authenticator
    throttle: AuthThrottle
    config: AuthConfig


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
