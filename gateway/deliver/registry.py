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
        key = (hop.name, hop.smart_hosts)
        if key not in self._smtp:
            self._smtp[key] = self._make_smtp(hop.smart_hosts)
        return self._smtp[key]

    def close(self) -> None:
        for deliverer in [self.mailbox, *self._smtp.values()]:
            if hasattr(deliverer, "close"):
                deliverer.close()
