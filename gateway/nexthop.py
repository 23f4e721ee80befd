"""
Where a recipient goes next, as a value: the router's answer, the key the
scheduler groups an attempt's recipients by, and what names the queue a
recipient waits in.

Three kinds, as Exchange's queues show them:

- the mailbox store (`MAILBOX`): mailbox delivery, to the local Maildir or
  the configured next hop; its queue is "Mailbox Delivery";
- a send connector with smart hosts: its queue is the connector's name;
- a send connector with DNS MX routing: one queue per recipient domain
  (Exchange's per-domain delivery queues), though the recipients of one
  attempt still go to the one deliverer the connector has.

No route is None, not a NextHop: the caller refuses the recipient (550 5.4.4)
or fails it. A NextHop is frozen and hashable: equal hops (the same
connector, as equal configuration) group together and share a deliverer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import SendConnector

MAILBOX_QUEUE = "Mailbox Delivery"


class HopKind(Enum):
    MAILBOX = "mailbox"
    SMART_HOSTS = "smart hosts"
    DNS_MX = "DNS MX"


@dataclass(frozen=True)
class NextHop:
    """The mailbox store (connector None) or one send connector."""

    connector: SendConnector | None = None

    @classmethod
    def via(cls, connector: SendConnector) -> NextHop:
        """The hop through a send connector (smart hosts or, with none, DNS MX routing)."""
        return cls(connector)

    @property
    def kind(self) -> HopKind:
        if self.connector is None:
            return HopKind.MAILBOX
        return HopKind.DNS_MX if self.connector.dns_routing else HopKind.SMART_HOSTS

    @property
    def is_mailbox(self) -> bool:
        return self.connector is None

    @property
    def name(self) -> str:
        """What logs, metrics and tracking call the hop: "Mailbox Delivery" or the send connector's name."""
        return MAILBOX_QUEUE if self.connector is None else self.connector.name

    @property
    def max_connections(self) -> int | None:
        """A send connector's limit on concurrent connections per destination; None for the mailbox store."""
        return None if self.connector is None else self.connector.max_connections

    def queue_name(self, address: str) -> str:
        """The queue `address` waits in on this hop: Mailbox Delivery, the connector's name, or (DNS MX) its domain."""
        if self.kind is HopKind.DNS_MX:
            return address.rpartition("@")[2].lower()
        return self.name

    def __str__(self) -> str:
        return "mailbox" if self.connector is None else f'send connector "{self.connector.name}"'


# The mailbox store's hop: every route to it is this one value.
MAILBOX = NextHop()
