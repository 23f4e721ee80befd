"""
The listener of one binding: picks the receive connector for each connection.

All connectors that share an `ip:port` sit behind one factory; the client's
address decides which one serves the connection (most specific remote range,
see connectors.py). A client no connector serves gets `421 4.3.2` and is
disconnected, and the refusal is logged.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from gateway.config import Binding, ReceiveConnector
from gateway.connectors import client_address, select_connector
from gateway.errors import Reply
from gateway.policy.checks import SessionPolicy
from gateway.policy.limits import ConnectionLimits
from gateway.smtpd.protocol import ESMTPServer

log = Logger(namespace="exgateway.smtpd")


class _Refuse(Protocol):
    def __init__(self, reply) -> None:
        self.reply = reply

    def connectionMade(self) -> None:
        self.transport.write(self.reply.encode())
        self.transport.loseConnection()


class BindingFactory(Factory):
    """
    `connectors` and `policy` are read at each new connection and may be
    replaced between connections (a reload); a session keeps the ones it got.
    """

    def __init__(
        self, binding: Binding, role: str, connectors: tuple[ReceiveConnector, ...], handler, policy: SessionPolicy, clock, limits=None,
        protocol_log=None, tls=None, auth=None,
    ) -> None:
        # TLSProvider and AuthService (frontend); replaced on reload like connectors and policy.
        self.tls = tls
        self.auth = auth
        self.limits = limits if limits is not None else ConnectionLimits()
        self.protocol_log = protocol_log
        self.binding = binding
        self.role = role
        self.connectors = connectors
        self.handler = handler
        self.policy = policy
        self.clock = clock

    def buildProtocol(self, addr) -> Protocol:
        try:
            client = client_address(addr.host)
        except ValueError:
            client = None
        connector = select_connector(self.connectors, client) if client is not None else None
        if connector is None:
            log.warn("no receive connector on {binding} serves {client}: refused", binding=str(self.binding), client=addr.host)
            return _Refuse(Reply.NO_CONNECTOR)
        refusal = self.limits.admit(connector, str(client))
        if refusal is not None:
            log.warn(
                "{connector} refused {client}: {reply}", connector=connector.identity, client=str(client), reply=str(refusal)
            )
            return _Refuse(refusal)
        return ESMTPServer(
            connector, self.handler, self.policy, self.clock, self.limits, self.protocol_log, tls=self.tls, auth=self.auth
        )
