"""
Delivery by DNS MX routing (a send connector without smart hosts).

Recipients are grouped by domain; each domain gets its own kept-connection
pool whose candidates are the domain's exchangers in MX order, each
expanded to all its addresses (resolve.py), walked with AddressHealth. A
null MX or a domain that does not exist fails its recipients at once; any
other DNS trouble leaves them queued for the next attempt.
"""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from gateway.deliver.health import AddressHealth
from gateway.deliver.pool import ConnectionPool
from gateway.deliver.resolve import MXResolver
from gateway.deliver.smtp import SMTPDelivery
from gateway.interfaces import IDeliverer

# Idle connections kept per destination domain; most domains see one message at a time.
IDLE_PER_DOMAIN = 2


@implementer(IDeliverer)
class MXDelivery:
    def __init__(self, reactor, resolver: MXResolver, connector, health: AddressHealth, protocol_log=None, timeouts=None,
                 security=None) -> None:
        # PhaseTimeouts for every exchanger's replies; None: the client's default.
        self.timeouts = timeouts
        self.reactor = reactor
        # The connector's OutboundSecurity (with its client certificate); None: connector.security().
        self.security = security if security is not None else connector.security()
        # The SMTP Send Protocol Log, written for every domain's connections; None: not logged.
        self.protocol_log = protocol_log
        self.resolver = resolver
        self.connector = connector
        self.helo_name = connector.fqdn
        self.health = health
        self.port = connector.port
        self.connect_timeout = connector.connection_timeout
        self.next_hop = "DNS MX"
        self._domains: dict[str, SMTPDelivery] = {}

    def _for(self, domain: str) -> SMTPDelivery:
        delivery = self._domains.get(domain)
        if delivery is None:
            def groups(domain=domain):
                return self.resolver.targets(domain, self.port).addCallback(lambda found: [addresses for _, addresses in found])

            c = self.connector
            pool = ConnectionPool(
                self.reactor, (), self.helo_name, self.connect_timeout, IDLE_PER_DOMAIN, health=self.health, groups=groups,
                security=self.security, max_connections=c.max_connections, max_messages=c.max_messages_per_connection,
                protocol_log=self.protocol_log, connector_id=c.name,
                timeouts=self.timeouts,
            )
            delivery = self._domains[domain] = SMTPDelivery(
                self.reactor, (), self.helo_name, pool=pool, next_hop=f"MX of {domain}", max_message_size=c.max_message_size,
            )
        return delivery

    @inlineCallbacks
    def deliver(self, envelope, recipients: list[str], body):
        by_domain: dict[str, list[str]] = {}
        for r in recipients:
            by_domain.setdefault(r.rpartition("@")[2].lower(), []).append(r)
        results = {}
        for domain, group in by_domain.items():
            results.update((yield self._for(domain).deliver(envelope, group, body)))
        return results

    def close(self) -> None:
        for delivery in self._domains.values():
            delivery.close()
        self._domains.clear()
