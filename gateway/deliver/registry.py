"""
Which deliverer takes a next hop: mailbox delivery, or an SMTP client per
send connector, made when first needed (so a send connector added by a
reload works without a restart) and kept for its connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gateway.nexthop import NextHop

if TYPE_CHECKING:
    from gateway.config import SendConnector


class Deliverer(Protocol):
    """gateway.interfaces.IDeliverer as mypy sees it (it does not read zope interfaces without a plugin)."""

    def deliver(self, envelope: Any, recipients: list[str], body: Any) -> Any: ...

    def close(self) -> None: ...


class Deliverers:
    def __init__(self, mailbox: Deliverer, make_smtp: Callable[[SendConnector], Deliverer]) -> None:
        self.mailbox = mailbox
        self._make_smtp = make_smtp
        self._smtp: dict[SendConnector, Deliverer] = {}

    def get(self, hop: NextHop | None) -> Deliverer | None:
        """The deliverer for a NextHop; None for no route."""
        if hop is None:
            return None
        if hop.connector is None:
            return self.mailbox
        # A reload that changes the connector's hosts or settings gets a fresh deliverer.
        if hop.connector not in self._smtp:
            self._smtp[hop.connector] = self._make_smtp(hop.connector)
        return self._smtp[hop.connector]

    def close(self) -> None:
        """At stop: every deliverer lets go of its kept connections (IDeliverer.close)."""
        for deliverer in [self.mailbox, *self._smtp.values()]:
            deliverer.close()
