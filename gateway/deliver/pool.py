"""
Kept-open SMTP connections to a list of hosts.

Used by the frontend for its hub pool and by the hub for its next hop: a
busy gateway sends many messages over a few connections instead of paying a
TCP handshake and an EHLO per message. New connections start at the next
host in turn, so load spreads over the list; a host that does not answer is
skipped for that connection and the next one is tried.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config import HostPort
from gateway.deliver import client as smtp_client
from gateway.deliver.client import SMTPClient

log = Logger(namespace="exgateway.deliver")


# A kept connection is retired after this long, well inside the peer's
# ConnectionTimeout (Exchange's default, and ours, is 10 minutes), which would
# otherwise cut it in the middle of a transaction.
MAX_AGE = 300.0


class NoHostAvailable(Exception):
    pass


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
    ) -> None:
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
            self._born.pop(client, None)
        if not self.hosts:
            return fail(NoHostAvailable("no hosts configured"))
        start = self._rotation
        self._rotation = (self._rotation + 1) % len(self.hosts)
        return self._connect(start, 0, [])

    def _connect(self, start: int, tried: int, errors: list[str]) -> Deferred:
        if tried >= len(self.hosts):
            return fail(NoHostAvailable("; ".join(errors)))
        host = self.hosts[(start + tried) % len(self.hosts)]
        d = smtp_client.connect(
            self.reactor, host.host, host.port, self.helo_name, self.connect_timeout, self.reply_timeout,
            self.protocol_log, self.connector_id,
        )

        def failed(failure: Failure):
            log.warn("{host} unavailable: {error}", host=str(host), error=failure.getErrorMessage())
            return self._connect(start, tried + 1, errors + [f"{host}: {failure.getErrorMessage()}"])

        def connected(client: SMTPClient):
            self._born[client] = self.reactor.seconds()
            return client, False

        d.addCallbacks(connected, failed)
        return d

    def release(self, client: SMTPClient) -> None:
        """Take back a client that is between transactions."""
        young = self.reactor.seconds() - self._born.get(client, 0.0) < self.max_age
        if client.connected and not client.busy and young and len(self._idle) < self.idle_max:
            self._idle.append(client)
        else:
            self._born.pop(client, None)
            client.quit()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        self._born.clear()
        for client in idle:
            client.quit()
