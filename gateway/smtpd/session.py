"""
What one SMTP connection knows about its client, and the seam to the tiers.

The protocol (wire) and the tiers (frontend proxy, hub intake) meet through
`MailHandler` and `Transaction`: the protocol asks a handler to begin a
transaction, add recipients, take the body and finish; the handler answers
with replies or raises `SMTPError`. Neither side knows how the other works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred

from gateway.address import Address
from gateway.config import ReceiveConnector
from gateway.dsnparams import MailDSN, RecipientDSN
from gateway.errors import SMTPReply

# Session ids live with the protocol logs (the send side numbers its sessions too); named here for smtpd/protocol.py.
from gateway.policy.rights import Principal, Right

if TYPE_CHECKING:
    from gateway.auth.identity import Identity


@dataclass
class Origin:
    """Where a message came from, as the Received header tells it."""

    client_ip: str
    client_port: int
    helo: str
    proto: str
    connector: str
    # The login an AUTH proved, and "version cipher thumbprint" of the TLS session; "" if none.
    auth: str = ""
    tls: str = ""


@dataclass(frozen=True)
class TLSInfo:
    """What a TLS handshake agreed: for the Received header, protocol log and XFORWARD."""

    version: str
    cipher: str
    thumbprint: str

    def __str__(self) -> str:
        return f"{self.version} {self.cipher} {self.thumbprint}"


@dataclass(eq=False)
class Session:
    connector: ReceiveConnector
    session_id: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    principal: Principal
    rights: frozenset[Right]
    helo: str | None = None
    esmtp: bool = False
    # XFORWARD attributes a trusted upstream node told us (hub side).
    xforward: dict[str, str] = field(default_factory=dict)
    tls: TLSInfo | None = None
    # Set by a successful AUTH (gateway.auth.identity.Identity).
    identity: Identity | None = None
    # The gateway node that proved the node secret (hub side), by the name it gave.
    node: str = ""
    auth_mechanism: str = ""

    @property
    def proto(self) -> str:
        """RFC 3848's names: ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both)."""
        base = "ESMTP" if self.esmtp else "SMTP"
        if self.tls is None and self.identity is None:
            return base
        return base + ("S" if self.tls is not None else "") + ("A" if self.identity is not None else "")

    def origin(self) -> Origin:
        """The original client: XFORWARD's word if a gateway node gave it."""
        xf = self.xforward
        helo = self.helo or ""
        return Origin(
            client_ip=xf.get("ADDR", self.client_ip),
            client_port=int(xf["PORT"]) if xf.get("PORT", "").isdigit() else self.client_port,
            helo=xf.get("HELO", helo),
            proto=xf.get("PROTO", self.proto),
            connector=xf.get("CONNECTOR", self.connector.identity),
            auth=xf.get("AUTH", self.identity.name if self.identity is not None else ""),
            tls=xf.get("TLS", str(self.tls) if self.tls is not None else ""),
        )


@dataclass
class MailFrom:
    sender: Address
    size: int | None
    body: str | None
    # RFC 4954 AUTH=: the submitter a trusted peer named, "<>" when given by anyone else, None when absent.
    auth: str | None = None
    # RET and ENVID (RFC 3461), if the client gave either.
    dsn: MailDSN | None = None
    # SMTPUTF8 (RFC 6531): UTF-8 addresses and headers may follow.
    smtputf8: bool = False


class Transaction(TypingProtocol):
    """One mail transaction, from MAIL to the final reply (or an abort)."""

    def add_recipient(self, recipient: Address, dsn: RecipientDSN | None = None) -> SMTPReply | Deferred:
        """Accept (reply) or refuse (raise / errback SMTPError) one recipient; `dsn`: its NOTIFY and ORCPT, if given."""

    def open_body(self) -> Deferred | None:
        """Get ready for body bytes; called before the 354."""

    def write(self, data: bytes) -> None:
        """Unstuffed body bytes, in order, as they arrive."""

    def finish(self) -> Deferred:
        """The body is complete: fire with the final reply (or errback SMTPError)."""

    def abort(self) -> None:
        """Forget the transaction; nothing of it may be delivered."""


class MailHandler(TypingProtocol):
    """The tier behind a connector: frontend proxy or hub intake."""

    def begin(self, session: Session, mail: MailFrom) -> Transaction:
        ...
