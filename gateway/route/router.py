"""
Where a recipient goes next.

Accepted domains go to mailbox delivery (the local Maildir store or the
configured next hop). Other domains go to the enabled send connector whose
address space matches most specifically (an exact domain beats the longest
`*.suffix`, which beats `*`), then the lowest cost, as in Exchange. A
recipient with no route is refused at RCPT rather than accepted and bounced
later.
"""

from __future__ import annotations

from gateway.address import Address, parse_mailbox
from gateway.domains import AcceptedDomains
from gateway.errors import SMTPError

MAILBOX = "mailbox"
# Queued addresses whose route is remembered (route_address), per Router: a reload makes a new one.
ROUTES_REMEMBERED = 4096


def _specificity(space: str, domain: str) -> int | None:
    """How closely an address space matches a domain (higher is closer), or None."""
    if space == "*":
        return 0
    if space.startswith("*."):
        return len(space) if domain.endswith(space[1:]) or domain == space[2:] else None
    return 10_000 if domain == space else None


class Router:
    def __init__(self, accepted_domains: AcceptedDomains, send_connectors: tuple = ()) -> None:
        self.accepted_domains = accepted_domains
        self.send_connectors = tuple(c for c in send_connectors if c.enabled)
        self._by_address: dict[str, object] = {}

    def route_address(self, address: str):
        """
        route() for an address as the queue holds it (a string), or None if
        it does not parse. Each delivery attempt asks again for every
        recipient; the answer depends only on this Router's configuration,
        so it is remembered (a bounded number of addresses), not parsed and
        matched again.
        """
        try:
            return self._by_address[address]
        except KeyError:
            pass
        try:
            hop = self.route(parse_mailbox(address))
        except SMTPError:
            hop = None
        if len(self._by_address) >= ROUTES_REMEMBERED:
            self._by_address.clear()
        self._by_address[address] = hop
        return hop

    def route(self, recipient: Address):
        """MAILBOX, the SendConnector for the recipient, or None if there is no route."""
        if recipient.literal:
            return None
        if recipient.domain in self.accepted_domains:
            return MAILBOX
        best, best_key = None, None
        for connector in self.send_connectors:
            score = max((m for m in (_specificity(s, recipient.domain) for s in connector.address_spaces) if m is not None), default=None)
            if score is None:
                continue
            key = (-score, connector.cost)
            if best_key is None or key < best_key:
                best, best_key = connector, key
        return best
