"""
The listener of one binding: picks the receive connector for each connection.

All connectors that share an `ip:port` sit behind one factory; the client's
address decides which one serves the connection (most specific remote range,
see connectors.py). A client no connector serves gets `421 4.3.2` and is
disconnected, and the refusal is logged. Behind a load balancer with PROXY
protocol, the address is the one the header reports (proxied.py).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from gateway.config.settings import ReceiveConnector
from gateway.config.values import Binding
from gateway.connectors import client_address, select_connector
from gateway.errors import Reply
from gateway.policy.checks import SessionPolicy
from gateway.policy.limits import ConnectionLimits
from gateway.smtpd.protocol import ESMTPServer
from gateway.smtpd.proxied import ProxyHeaderReceiver

log = Logger(namespace="exgateway.smtpd")


class _Refuse(Protocol):
    transport: Any

    def __init__(self, reply) -> None:
        self.reply = reply

    def connectionMade(self) -> None:
        self.transport.write(self.reply.encode())
        self.transport.loseConnection()


class BindingFactory(Factory):
    # No "Starting factory <...>" lines: the start-up lines say what listens (gateway/startup.py).
    noisy = False

    """
    `connectors` and `policy` are read at each new connection and may be
    replaced between connections (a reload); a session keeps the ones it got.
    """

    def __init__(
        self, binding: Binding, role: str, connectors: tuple[ReceiveConnector, ...], handler, policy: SessionPolicy, clock, limits=None,
        protocol_log=None, tls=None, auth=None, state=None, metrics=None, sessions=None, node=None,
    ) -> None:
        # NodeState: a draining node takes no new connections.
        self.state = state
        # Metrics, if this process exports them.
        self.metrics = metrics
        # The process's open sessions (gateway/smtpd/shutdown.py): a stopping process takes no new one.
        self.sessions = sessions
        # NodeCredential, for the ExchangeServer authentication of other gateway nodes.
        self.node = node
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

    def _proxy_settings(self):
        """(trusted proxy ranges) if this binding's connectors take PROXY headers, else None."""
        for c in self.connectors:
            if c.proxy_protocol:
                return c.trusted_proxies
        return None

    def buildProtocol(self, addr) -> Protocol:
        if self.state is not None and self.state.draining:
            return _Refuse(Reply.DRAINING)
        trusted = self._proxy_settings()
        if trusted is None:
            return self.session_for(addr.host)
        try:
            proxy = client_address(addr.host)
        except ValueError:
            proxy = None
        if proxy is None or not any(r.contains(proxy) for r in trusted):
            log.warn("{client} is not a trusted proxy for {binding} (PROXY protocol): refused", client=addr.host, binding=str(self.binding))
            return _Refuse(Reply.NO_CONNECTOR)
        return ProxyHeaderReceiver(self, addr)

    def session_for(self, host: str) -> Protocol:
        """The session for a client address: the most specific connector, within its limits."""
        try:
            client = client_address(host)
        except ValueError:
            client = None
        if self.sessions is not None and self.sessions.stopping:
            return _Refuse(Reply.SHUTTING_DOWN)
        connector = select_connector(self.connectors, client) if client is not None else None
        if connector is None:
            log.warn("no receive connector on {binding} serves {client}: refused", binding=str(self.binding), client=host)
            return _Refuse(Reply.NO_CONNECTOR)
        refusal = self.limits.admit(connector, str(client))
        if refusal is not None:
            log.warn(
                "{connector} refused {client}: {reply}", connector=connector.identity, client=str(client), reply=str(refusal)
            )
            return _Refuse(refusal)
        session = ESMTPServer(
            connector, self.handler, self.policy, self.clock, self.limits, self.protocol_log, tls=self.tls, auth=self.auth,
            metrics=self.metrics, node=self.node,
        )
        session.sessions = self.sessions
        return session
