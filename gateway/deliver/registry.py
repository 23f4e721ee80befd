"""
Which deliverer takes a next hop: mailbox delivery, or an SMTP client per
send connector, made when first needed (so a send connector added by a
reload works without a restart) and kept for its connections.
"""

from __future__ import annotations

from gateway.route.router import MAILBOX


class Deliverers:
    def __init__(self, mailbox, make_smtp) -> None:
        self.mailbox = mailbox
        self._make_smtp = make_smtp
        self._smtp: dict = {}

    def get(self, hop):
        """The deliverer for MAILBOX or a SendConnector; None for no route."""
        if hop == MAILBOX:
            return self.mailbox
        if hop is None:
            return None
        # A reload that changes the connector's hosts or settings gets a fresh deliverer.
        if hop not in self._smtp:
            self._smtp[hop] = self._make_smtp(hop)
        return self._smtp[hop]

    def close(self) -> None:
        for deliverer in [self.mailbox, *self._smtp.values()]:
            if hasattr(deliverer, "close"):
                deliverer.close()
