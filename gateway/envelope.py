"""
Value types for a queued message: the envelope and per-recipient state.

The envelope is what the queue writes after the body (as JSON, by
gateway/queue/format.py); it is the commit marker, so it carries the
body's size and a loader refuses an envelope whose body does not match.
State is per recipient: a message with one delivered and one deferred
recipient retries only the second.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class RecipientState(str, Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self is not RecipientState.PENDING


@dataclass(frozen=True)
class Recipient:
    address: str
    state: RecipientState = RecipientState.PENDING
    attempts: int = 0
    last_reply: str | None = None
    # RFC 3461 NOTIFY ("NEVER" or SUCCESS,FAILURE,DELAY; "" = not given) and
    # ORCPT ("rfc822;address", decoded), from gateway/dsnparams.py.
    notify: str = ""
    orcpt: str = ""


class Outcome(str):
    """
    A delivered recipient's reply, saying which success notice (RFC 3461)
    is ours to send if the recipient asked for one: "delivered" (a local
    mailbox), "relayed" (a next hop without DSN, which will send none), or
    "" (a next hop with DSN, which got NOTIFY and reports itself). Stored
    as the plain reply text.
    """

    dsn_action: str

    def __new__(cls, text: str, dsn_action: str = "") -> Outcome:
        outcome = super().__new__(cls, text)
        outcome.dsn_action = dsn_action
        return outcome


@dataclass(frozen=True)
class Envelope:
    queue_id: str
    internal_id: int
    message_id: str
    sender: str
    recipients: tuple[Recipient, ...]
    received_at: float
    size: int
    client_ip: str = ""
    helo: str = ""
    connector: str = ""
    attempts: int = 0
    next_attempt: float = 0.0
    # RFC 3461 RET ("FULL", "HDRS" or "") and ENVID (decoded), for our notices and DSN-capable next hops.
    dsn_ret: str = ""
    dsn_envid: str = ""
    # The message needs SMTPUTF8 (RFC 6531): a UTF-8 address or header, taken in a SMTPUTF8 transaction.
    smtputf8: bool = False
    # Who submitted it, for tracking, routing by sender and NDRs (intake): the
    # AUTH login, the TLS session ("version cipher thumbprint"), the gateway
    # node that forwarded it; its Subject (at most 256 characters) and MAIL's
    # BODY= parameter (7BIT, 8BITMIME; "" = not given).
    auth: str = ""
    tls: str = ""
    via: str = ""
    subject: str = ""
    body_type: str = ""
    # The DKIM-Signature field made at intake, prepended at delivery; with
    # dkim_local, to the mailbox too.
    dkim: str = ""
    dkim_local: bool = False
    # The scheduler's notes: a delay notice went out; a notice about this
    # message could not be queued (its failure then goes without one).
    delay_notified: bool = False
    notice_failed: bool = False
    # Reports the gateway writes itself: the message a delivery notice is
    # about and its kind ("failed", "delayed", ...), the message a journal
    # report copies.
    reports_on: str = ""
    report_kind: str = ""
    journal_of: str = ""

    @property
    def pending(self) -> tuple[Recipient, ...]:
        return tuple(r for r in self.recipients if r.state is RecipientState.PENDING)

    @property
    def done(self) -> bool:
        return all(r.state.final for r in self.recipients)

    def with_results(self, results: dict[str, tuple[RecipientState, str | None]], next_attempt: float) -> Envelope:
        """A copy with the outcome of one delivery attempt applied."""
        recipients = []
        for r in self.recipients:
            if r.address in results:
                state, reply = results[r.address]
                r = replace(r, state=state, attempts=r.attempts + 1, last_reply=reply)
            recipients.append(r)
        return replace(self, recipients=tuple(recipients), attempts=self.attempts + 1, next_attempt=next_attempt)
