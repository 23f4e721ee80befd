"""
Where a recipient goes next.

Accepted domains go to mailbox delivery (the local Maildir store or the
configured next hop). Every other domain has no route until send connectors
exist, and a recipient with no route is refused at RCPT rather than accepted
and bounced later.
"""

from __future__ import annotations

from gateway.address import Address
from gateway.domains import AcceptedDomains

MAILBOX = "mailbox"


class Router:
    def __init__(self, accepted_domains: AcceptedDomains) -> None:
        self.accepted_domains = accepted_domains

    def route(self, recipient: Address) -> str | None:
        """The name of the next hop for a recipient, or None if there is none."""
        if not recipient.literal and recipient.domain in self.accepted_domains:
            return MAILBOX
        return None
