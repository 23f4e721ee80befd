"""
Kept-open SMTP connections to a list of hosts.

Used by the frontend for its hub pool and by the hub for its next hop: a
busy gateway sends many messages over a few connections instead of paying a
TCP handshake and an EHLO per message.

A new connection walks the candidate addresses: each configured host
expanded to all its A/AAAA addresses when a resolver is given (else a name
is left to HostnameEndpoint), in the order AddressHealth gives (the hosts in
turn when `rotate`, as the hub pool does, or in their configured order, as
smart hosts are; a name's addresses rotating; addresses that failed lately
last). An address that refuses, times out or greets with 4xx is marked bad
and the next one is tried in the same attempt.
"""

from __future__ import annotations

import ipaddress
from collections import deque

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config.values import HostPort
from gateway.deliver import client as smtp_client
from gateway.deliver.client import SMTPClient
from gateway.deliver.health import AddressHealth

log = Logger(namespace="exgateway.deliver")


# A kept connection is retired after this long, well inside the peer's
# ConnectionTimeout (Exchange's default, and ours, is 10 minutes), which would
# otherwise cut it in the middle of a transaction.
MAX_AGE = 300.0


class NoHostAvailable(Exception):
    pass


def _no_address(hosts) -> list:
    raise NoHostAvailable("no address (A/AAAA) for " + ", ".join(map(str, hosts)))


class ConnectionPool:
    def __init__(
        self,
        reactor,
        hosts: tuple[HostPort, ...],
        helo_name: str,
        connect_timeout: float,
        idle_max: int,
        reply_timeout: float = 300.0,
        max_age: float = MAX_AGE,
        protocol_log=None,
        connector_id: str = "",
        resolver=None,
        health: AddressHealth | None = None,
        rotate: bool = True,
        groups=None,
        security=None,
        max_connections: int | None = None,
        max_messages: int | None = None,
        timeouts=None,
    ) -> None:
        # PhaseTimeouts for each reply (gateway/deliver/timeouts.py); None: reply_timeout for every one.
        self.timeouts = timeouts
        # OutboundSecurity for every connection (STARTTLS / AUTH policy); None: plain, as to a hub.
        self.security = security
        # Exchange's MaxPerDomainOutboundConnections and SmtpMaxMessagesPerConnection.
        self.max_connections = max_connections
        self.max_messages = max_messages
        self._open = 0
        self._queued: deque[Deferred] = deque()
        # MXResolver to expand host names to all their addresses; None leaves names to HostnameEndpoint.
        self.resolver = resolver
        self.health = health if health is not None else AddressHealth(reactor)
        self.rotate = rotate
        # A callable giving the address groups to walk (MX delivery); default: the configured hosts.
        self.groups = groups or self._host_groups
        self.protocol_log = protocol_log
        self.connector_id = connector_id
        self.reactor = reactor
        self.hosts = hosts
        self.helo_name = helo_name
        self.connect_timeout = connect_timeout
        self.idle_max = idle_max
        self.reply_timeout = reply_timeout
        self.max_age = max_age
        self._idle: list[SMTPClient] = []
        self._born: dict[SMTPClient, float] = {}
        self._rotation = 0

    def acquire(self, reuse: bool = True) -> Deferred:
        """Fire with (client, reused): an idle connection if there is one, else a new one."""
        while reuse and self._idle:
            client = self._idle.pop()
            if client.connected:
                return succeed((client, True))
            self._forget(client)
        if self.max_connections is not None and self._open >= self.max_connections:
            # At the per-destination limit: wait for a connection to come back.
            waiter: Deferred = Deferred()
            self._queued.append(waiter)
            return waiter
        return self._new()

    def _new(self) -> Deferred:
        self._open += 1
        d = self.groups()
        d.addCallback(lambda groups: self._connect(self.health.order(groups), 0, []))
        d.addErrback(self._not_opened)
        return d

    def _not_opened(self, failure: Failure):
        self._open -= 1
        self._next_waiter()
        return failure

    def _forget(self, client: SMTPClient) -> None:
        if self._born.pop(client, None) is not None:
            self._open -= 1

    def _next_waiter(self) -> None:
        if self._queued and (self.max_connections is None or self._open < self.max_connections):
            waiter = self._queued.popleft()
            self._new().chainDeferred(waiter)

    def _host_groups(self) -> Deferred:
        """The configured hosts, each as the group of its addresses."""
        if not self.hosts:
            return fail(NoHostAvailable("no hosts configured"))
        hosts = list(self.hosts)
        if self.rotate:
            start = self._rotation
            self._rotation = (self._rotation + 1) % len(hosts)
            hosts = hosts[start:] + hosts[:start]
        if self.resolver is None:
            return succeed([[h] for h in hosts])
        return DeferredList([self._expand(h) for h in hosts]).addCallback(
            lambda results: [group for ok, group in results if ok and group] or _no_address(hosts)
        )

    def _expand(self, host: HostPort) -> Deferred:
        try:
            ipaddress.ip_address(host.host)
            return succeed([host])
        except ValueError:
            pass
        return self.resolver.addresses(host.host).addCallback(lambda addresses: [HostPort(a, host.port, host.host) for a in addresses])

    def _connect(self, candidates: list[HostPort], tried: int, errors: list[str]) -> Deferred:
        if tried >= len(candidates):
            return fail(NoHostAvailable("; ".join(errors) or "no address to try"))
        host = candidates[tried]
        d = smtp_client.connect(
            self.reactor, host.host, host.port, self.helo_name, self.connect_timeout, self.reply_timeout,
            self.protocol_log, self.connector_id, self.security, host.name or host.host, self.timeouts,
        )

        def failed(failure: Failure):
            if failure.check(smtp_client.LoginUnavailable):
                # The host answered; the connector's login is what fails: the same on every address.
                log.warn("{host}: {error}", host=str(host), error=failure.getErrorMessage())
                return failure
            log.warn("{host} unavailable: {error}", host=str(host), error=failure.getErrorMessage())
            self.health.mark_bad(host)
            return self._connect(candidates, tried + 1, [*errors, f"{host}: {failure.getErrorMessage()}"])

        def connected(client: SMTPClient):
            self.health.mark_good(host)
            self._born[client] = self.reactor.seconds()
            return client, False

        d.addCallbacks(connected, failed)
        return d

    def release(self, client: SMTPClient) -> None:
        """Take back a client that is between transactions."""
        client.messages += 1
        young = self.reactor.seconds() - self._born.get(client, 0.0) < self.max_age
        fresh = self.max_messages is None or client.messages < self.max_messages
        usable = client.connected and not client.busy and young and fresh
        if usable and self._queued:
            self._queued.popleft().callback((client, True))
            return
        if usable and len(self._idle) < self.idle_max:
            self._idle.append(client)
        else:
            self._forget(client)
            client.quit()
            self._next_waiter()

    def discard(self, client: SMTPClient) -> None:
        """A client that broke in use (and was aborted): no longer counts toward the limit."""
        self._forget(client)
        self._next_waiter()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            self._forget(client)
        for client in idle:
            client.quit()
