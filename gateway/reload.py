"""
Reloading the configuration without a restart (SIGHUP, or `exgateway reload`).

An admin who adds a relay IP or an accepted domain should not have to drop
every session to apply it. On reload the file is read and validated whole;
a file with errors is refused, each error logged, and the running
configuration kept. A good file replaces the connectors, rights and accepted
domains that new connections see. A session already open keeps the
connector and policy it started with: the listener hands each new session
the objects current at that moment, and a reload swaps them, never edits
them.

A file that changes the listening addresses is refused as a whole (sockets
are opened at start-up, as root): restart to apply it. Changes to the
settings the schema marks restart-only (gateway/config/schema.py: the hub
pool, the queue, mailbox, DNS, logs, admin, health, limits and workers
settings, the server's names and directories) are reported and wait for a
restart. Receive and send connectors, accepted domains, AUTH settings and
the certificate store apply at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from gateway.config import Config, ConfigError, load_config
from gateway.config.schema import restart_only
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.route.router import Router
from gateway.tls.check import certificate_problems
from gateway.tls.store import CertificateStore

log = Logger(namespace="exgateway.reload")

# The Config attributes whose change waits for a restart: the schema's restart-only keys (gateway/config/schema.py).
RESTART_ONLY = restart_only()


def _bindings(config: Config, roles: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(str(b), c.role) for c in config.receive_connectors if c.enabled and c.role in roles for b in c.bindings}


class LiveConfig:
    """The running configuration, and the objects built from it that a reload replaces."""

    def __init__(
        self, config: Config, path: Path | None, roles: tuple[str, ...], tls: Any = None,
        make_auth: Callable[[Config, Any], Any] | None = None,
        make_recipient_exists: Callable[[Config], Callable[[str], Any]] | None = None,
    ) -> None:
        self.path = path
        self.roles = roles
        self.factories: list[Any] = []
        self.routed: list[Any] = []
        # The frontend's TLSProvider (its store is re-read on reload) and a
        # function config -> AuthService (rebuilt on reload); None on a hub.
        self.tls = tls
        self.make_auth = make_auth
        self.auth: Any = None
        # A function config -> recipient_exists(address) -> bool | None (recipient
        # validation), rebuilt on reload; None: none configured (route/router.py).
        self.make_recipient_exists = make_recipient_exists
        # What the last reload did, for `exgateway reload` to relay: applied, errors, settings waiting for a restart.
        self.outcome: dict[str, Any] = {}
        self._apply(config)

    def _apply(self, config: Config) -> None:
        self.config = config
        domains = AcceptedDomains(config.accepted_domains)
        self.policy = SessionPolicy(domains)
        exists = self.make_recipient_exists(config) if self.make_recipient_exists is not None else None
        self.router = Router(domains, config.send_connectors, exists)
        if self.make_auth is not None:
            self.auth = self.make_auth(config, self.auth)
        for factory in self.factories:
            self._update_factory(factory)
        for holder in self.routed:
            holder.router = self.router
            if hasattr(holder, "configure"):
                holder.configure(config)

    def _update_factory(self, factory: Any) -> None:
        factory.connectors = tuple(
            c for c in self.config.receive_connectors
            if c.enabled and c.role == factory.role and factory.binding in c.bindings
        )
        factory.policy = self.policy
        factory.tls = self.tls
        factory.auth = self.auth

    def attach(self, factory: Any) -> None:
        """A listener whose connectors and policy follow reloads."""
        self.factories.append(factory)
        self._update_factory(factory)

    def follow_routes(self, holder: Any) -> None:
        """An object whose `router` attribute follows reloads (hub intake, scheduler)."""
        holder.router = self.router
        if hasattr(holder, "configure"):
            holder.configure(self.config)
        self.routed.append(holder)

    def reload(self) -> bool:
        """Read the file again; apply it if it is valid. True if applied."""
        self.outcome = {"path": str(self.path), "applied": False, "errors": [], "restart_needed": []}
        try:
            new = load_config(self.path)
        except ConfigError as e:
            for problem in e.problems:
                log.error("reload refused, running configuration kept: {problem}", problem=str(problem))
            self.outcome["errors"] = [str(p) for p in e.problems]
            return False
        old = self.config
        added = _bindings(new, self.roles) - _bindings(old, self.roles)
        removed = _bindings(old, self.roles) - _bindings(new, self.roles)
        if added or removed:
            # Listening sockets are opened at start-up (as root, before privileges
            # drop); applying the rest would leave a port serving nobody.
            log.error(
                "reload refused, running configuration kept: listening addresses changed "
                "(added: {added}; removed: {removed}); restart the gateway to apply this file",
                added=", ".join(sorted(f"{b} ({r})" for b, r in added)) or "none",
                removed=", ".join(sorted(f"{b} ({r})" for b, r in removed)) or "none",
            )
            self.outcome["errors"] = [
                "listening addresses changed (added: {}; removed: {}); restart the gateway to apply this file".format(
                    ", ".join(sorted(f"{b} ({r})" for b, r in added)) or "none",
                    ", ".join(sorted(f"{b} ({r})" for b, r in removed)) or "none")]
            return False
        if self.tls is not None:
            # Read apart from the running store: a refused file leaves the running certificates as they were.
            problems = certificate_problems(new, CertificateStore(self.tls.store.directory).load())
            if problems:
                for problem in problems:
                    log.error("reload refused, running configuration kept: {problem}", problem=str(problem))
                self.outcome["errors"] = [str(p) for p in problems]
                return False
        fixed = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
        self._apply(new)
        if self.tls is not None:
            self.tls.reload()
        log.info(
            "configuration reloaded from {path}: {connectors} receive connectors, {domains} accepted domains",
            path=str(new.path),
            connectors=len(new.receive_connectors),
            domains=len(new.accepted_domains),
        )
        if fixed:
            log.warn("changes to {settings} take effect at the next restart", settings=", ".join(fixed))
        self.outcome.update(applied=True, restart_needed=fixed)
        return True


class ReloadOnHangup(Service):
    """SIGHUP reloads the configuration (what `exgateway reload` sends)."""

    def __init__(self, live: LiveConfig, reactor: Any, forward: Callable[[], object] | None = None) -> None:
        self.live = live
        self.reactor = reactor
        # The SIGHUP handler before ours, put back at stop.
        self._previous: Any = None
        # Worker 0 passes the signal on to the other workers (each reads the file itself).
        self.forward = forward

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self._hangup))

    def _hangup(self) -> dict[str, Any]:
        """Reload here and in the other workers (each reads the file itself); what happened here."""
        applied = self.live.reload()
        if applied and self.forward is not None:
            self.forward()
        return self.live.outcome

    reload_now = _hangup

    def stopService(self) -> Any:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
        return super().stopService()
