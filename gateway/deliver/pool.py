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


class NoHostAvailable(Exception):
    pass


class ConnectionPool:
    def __init__(self, reactor, hosts: tuple[HostPort, ...], helo_name: str, connect_timeout: float, idle_max: int, reply_timeout: float = 300.0) -> None:
        self.reactor = reactor
        self.hosts = hosts
        self.helo_name = helo_name
        self.connect_timeout = connect_timeout
        self.idle_max = idle_max
        self.reply_timeout = reply_timeout
        self._idle: list[SMTPClient] = []
        self._rotation = 0

    def acquire(self, reuse: bool = True) -> Deferred:
        """Fire with (client, reused): an idle connection if there is one, else a new one."""
        while reuse and self._idle:
            client = self._idle.pop()
            if client.connected:
                return succeed((client, True))
        if not self.hosts:
            return fail(NoHostAvailable("no hosts configured"))
        start = self._rotation
        self._rotation = (self._rotation + 1) % len(self.hosts)
        return self._connect(start, 0, [])

    def _connect(self, start: int, tried: int, errors: list[str]) -> Deferred:
        if tried >= len(self.hosts):
            return fail(NoHostAvailable("; ".join(errors)))
        host = self.hosts[(start + tried) % len(self.hosts)]
        d = smtp_client.connect(self.reactor, host.host, host.port, self.helo_name, self.connect_timeout, self.reply_timeout)

        def failed(failure: Failure):
            log.warn("{host} unavailable: {error}", host=str(host), error=failure.getErrorMessage())
            return self._connect(start, tried + 1, errors + [f"{host}: {failure.getErrorMessage()}"])

        d.addCallbacks(lambda client: (client, False), failed)
        return d

    def release(self, client: SMTPClient) -> None:
        """Take back a client that is between transactions."""
        if client.connected and not client.busy and len(self._idle) < self.idle_max:
            self._idle.append(client)
        else:
            client.quit()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            client.quit()
