"""
The checks at MAIL and RCPT, as pure decisions over the session's rights.

Each check returns nothing or raises SMTPError with the catalogue reply and
the reason for the log. The relay rule lives here and nowhere else: a
recipient is accepted if its domain is an accepted domain or the client holds
ms-Exch-SMTP-Accept-Any-Recipient; an address a next hop might re-route
(`%`, `!`, a quoted `@`) is refused outright, since no accepted domain can
vouch for where such an address ends up.
"""

from __future__ import annotations

from gateway.address import POSTMASTER, Address
from gateway.domains import AcceptedDomains
from gateway.errors import Reply, SMTPError
from gateway.policy.rights import Right


class SessionPolicy:
    def __init__(self, accepted_domains: AcceptedDomains) -> None:
        self.accepted_domains = accepted_domains

    def check_mail(
        self, rights: frozenset[Right], sender: Address, size: int | None, max_size: int, identity=None
    ) -> None:
        """
        `identity` is set once AUTH succeeded: then the user's send-as
        addresses decide the sender (550 5.7.60), unless the connector grants
        authenticated users ms-Exch-SMTP-Accept-Any-Sender.
        """
        if Right.SUBMIT not in rights:
            raise SMTPError(Reply.NOT_AUTHENTICATED, reason="connector grants no Submit right to this client")
        if identity is not None:
            if Right.ACCEPT_ANY_SENDER not in rights and not identity.send_as.allows(str(sender)):
                raise SMTPError(Reply.SEND_AS_DENIED, reason=f"{identity.name} may not send as <{sender}>")
        elif (
            not sender.null
            and Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER not in rights
            and self.accepted_domains.authoritative(sender.domain)
        ):
            raise SMTPError(Reply.CANNOT_SEND_AS, reason="authoritative-domain sender without the right to use it")
        if size is not None and size > max_size and Right.BYPASS_MESSAGE_SIZE_LIMIT not in rights:
            raise SMTPError(Reply.SIZE_EXCEEDED, reason=f"declared SIZE {size} over {max_size}")

    def resolve_postmaster(self, recipient: Address) -> Address:
        """Bare <Postmaster> is the postmaster of the first authoritative domain."""
        if recipient is not POSTMASTER:
            return recipient
        domain = self.accepted_domains.primary()
        if domain is None:
            raise SMTPError(Reply.RELAY_DENIED, reason="no authoritative domain for <Postmaster>")
        return Address("postmaster", domain)

    def check_rcpt(self, rights: frozenset[Right], recipient: Address, accepted_so_far: int, max_recipients: int) -> None:
        if accepted_so_far >= max_recipients:
            raise SMTPError(Reply.TOO_MANY_RECIPIENTS, reason=f"limit {max_recipients}")
        if recipient.has_routing_characters:
            raise SMTPError(Reply.BAD_ADDRESS, reason="routing characters in local part", recipient=str(recipient))
        if not recipient.literal and recipient.domain in self.accepted_domains:
            return
        if Right.ACCEPT_ANY_RECIPIENT in rights:
            return
        raise SMTPError(Reply.RELAY_DENIED, reason="relay to non-accepted domain", recipient=str(recipient))
