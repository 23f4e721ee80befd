"""
Where a recipient goes next.

Accepted domains are routed by their type, as Exchange does:

- Authoritative: the mailbox store (the local Maildir or the configured
  next hop), always. Every recipient is the organisation's; an unknown one
  is refused at RCPT by recipient validation, never sent elsewhere.
- InternalRelay: the address space is shared with another system. A
  recipient the organisation knows (recipient validation says it exists)
  goes to the mailbox store; one it does not know goes out through the send
  connector whose address space matches, and is refused at RCPT (no route)
  if none matches. With no recipient validation configured nobody is known
  locally: the domain's mail goes out through a send connector that names
  the domain (`shared.example` or `*.example`), and otherwise lands in the
  mailbox store. The catch-all `*` does not count there: without knowing
  who is local, sending all of a domain of ours to the Internet's MX (often
  this gateway again) is not what an admin who only declared the domain
  expects.
- ExternalRelay: always a send connector, never the mailbox store; no
  matching send connector is no route, as for any other domain.

Other domains go to the enabled send connector whose address space matches
most specifically (an exact domain beats the longest `*.suffix`, which
beats `*`), then the lowest cost, as in Exchange. A recipient with no route
is refused at RCPT (550 5.4.4) rather than accepted and bounced later.

A send connector may also be scoped to where the mail comes from (sender,
receive connector, authenticated user: route/source.py); among connectors
whose address spaces match equally well, one scoped to the message's
source beats one that is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zope.interface import implementer

from gateway.address import Address, parse_mailbox
from gateway.domains import AcceptedDomains, DomainType
from gateway.errors import SMTPError
from gateway.interfaces import IRouter
from gateway.nexthop import MAILBOX, NextHop
from gateway.route.source import RouteSource, describe_source, source_score

# Queued addresses whose route is remembered (route_address), per Router: a reload makes a new one.
ROUTES_REMEMBERED = 4096

# Recipient validation's answer for one address: True (a known recipient),
# False (known not to exist), None (nothing configured can tell).
RecipientExists = Callable[[str], bool | None]


def _specificity(space: str, domain: str) -> int | None:
    """How closely an address space matches a domain (higher is closer), or None."""
    if space == "*":
        return 0
    if space.startswith("*."):
        return len(space) if domain.endswith(space[1:]) or domain == space[2:] else None
    return 10_000 if domain == space else None


@dataclass(frozen=True)
class Decision:
    """
    A route and why: `hop` is a NextHop (MAILBOX or a send connector's) or None (no route);
    `domain_type` the accepted domain's type, or "" for a domain that is
    not accepted; `why` one sentence for `receive-connector test`.
    """

    hop: NextHop | None
    domain_type: str
    why: str

    @property
    def route_name(self) -> str:
        """The route column: mailbox, the send connector's name, or (no route)."""
        return "(no route)" if self.hop is None else str(self.hop)


@implementer(IRouter)
class Router:
    def __init__(
        self, accepted_domains: AcceptedDomains, send_connectors: tuple = (), recipient_exists: RecipientExists | None = None
    ) -> None:
        self.accepted_domains = accepted_domains
        self.send_connectors = tuple(c for c in send_connectors if c.enabled)
        # Recipient validation (LiveConfig.make_recipient_exists builds it); None: nothing configured, nobody known locally.
        self.recipient_exists = recipient_exists
        # Whether any connector is scoped to a source: only then does the source take part in the remembered routes.
        self.source_dependent = any(
            c.source_senders or c.source_receive_connectors or c.source_users for c in self.send_connectors
        )
        self._by_address: dict = {}

    def route_address(self, address: str, source: RouteSource | None = None) -> NextHop | None:
        """
        route() for an address as the queue holds it (a string), or None if
        it does not parse. Each delivery attempt asks again for every
        recipient; the answer depends only on this Router's configuration,
        so it is remembered (a bounded number of addresses), not parsed and
        matched again. An InternalRelay recipient's answer depends on
        recipient validation too, which may learn of a new mailbox at any
        time: that answer is asked for each time. `source`: the message's
        (RouteSource.of(envelope)), for connectors scoped to one.
        """
        key = (address, source) if self.source_dependent else address
        try:
            return self._by_address[key]
        except KeyError:
            pass
        try:
            # A queued address was checked on the way in; a UTF-8 one came in a SMTPUTF8 transaction.
            recipient = parse_mailbox(address, utf8=not address.isascii())
        except SMTPError:
            recipient = None
        hop = None if recipient is None else self.route(recipient, source)
        if recipient is not None and self.recipient_exists is not None and self._internal_relay(recipient):
            return hop
        if len(self._by_address) >= ROUTES_REMEMBERED:
            self._by_address.clear()
        self._by_address[key] = hop
        return hop

    def _internal_relay(self, recipient: Address) -> bool:
        found = None if recipient.literal else self.accepted_domains.lookup(recipient.domain)
        return found is not None and found.type is DomainType.INTERNAL_RELAY

    def route(self, recipient: Address, source: RouteSource | None = None) -> NextHop | None:
        """MAILBOX, the hop through the send connector for the recipient (from `source`), or None if there is no route."""
        return self.decide(recipient, source).hop

    def decide(self, recipient: Address, source: RouteSource | None = None) -> Decision:
        """The route for one recipient, with the accepted domain's type and the reason."""
        decision = self._decide(recipient, source)
        connector = decision.hop.connector if decision.hop is not None else None
        if connector is not None and source_score(connector, None) is None:
            return Decision(
                decision.hop, decision.domain_type, f"{decision.why}; the message's source matches {describe_source(connector, source)}"
            )
        return decision

    def _decide(self, recipient: Address, source: RouteSource | None) -> Decision:
        if recipient.literal:
            return Decision(None, "", "an address literal is not routed")
        accepted = self.accepted_domains.lookup(recipient.domain)
        if accepted is None:
            connector = self.send_connector(recipient.domain, source=source)
            if connector is None:
                return Decision(None, "", f"{recipient.domain} is not an accepted domain and no send connector's address space matches it")
            return Decision(NextHop.via(connector), "", f"{recipient.domain} is not an accepted domain")
        kind = accepted.type
        where = f"{accepted.domain} is an {kind.value} accepted domain"
        if kind is DomainType.AUTHORITATIVE:
            return Decision(MAILBOX, kind.value, where)
        connector = self.send_connector(recipient.domain, source=source)
        if kind is DomainType.EXTERNAL_RELAY:
            if connector is None:
                return Decision(None, kind.value, f"{where}, and no send connector's address space matches it")
            return Decision(NextHop.via(connector), kind.value, where)
        exists = self.recipient_exists(str(recipient)) if self.recipient_exists is not None else None
        if exists:
            return Decision(MAILBOX, kind.value, f"{where}; <{recipient}> is a known recipient")
        if exists is None:
            if connector is None or self.send_connector(recipient.domain, catch_all=False, source=source) is None:
                return Decision(MAILBOX, kind.value, f"{where}; no recipient validation and no send connector names it")
            return Decision(NextHop.via(connector), kind.value, f"{where}; no recipient validation, so nobody is known locally")
        if connector is None:
            return Decision(None, kind.value, f"{where}; <{recipient}> is not a known recipient and no send connector's address space matches it")
        return Decision(NextHop.via(connector), kind.value, f"{where}; <{recipient}> is not a known recipient")

    def send_connector(self, domain: str, catch_all: bool = True, source: RouteSource | None = None):
        """
        The enabled send connector for a domain: most specific address space,
        then the closest source match (route/source.py), then lowest cost; or
        None. `catch_all=False`: only one whose address space names the
        domain (not `*`). A connector scoped to a source other than `source`
        is no candidate.
        """
        best, best_key = None, None
        for connector in self.send_connectors:
            score = max((m for m in (_specificity(s, domain) for s in connector.address_spaces) if m is not None), default=None)
            if score is None or (score == 0 and not catch_all):
                continue
            scoped = source_score(connector, source)
            if scoped is None:
                continue
            key = (-score, -scoped[0], -scoped[1], connector.cost)
            if best_key is None or key < best_key:
                best, best_key = connector, key
        return best
