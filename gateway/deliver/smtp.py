"""
Mailbox delivery to an SMTP next hop (the organisation's mail store).

One connection per attempt, every pending recipient in one transaction;
each recipient's outcome is its own: a 250 to RCPT and to the final dot
delivers it, a 4xx anywhere leaves it queued, a 5xx fails it.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from gateway.config import HostPort
from gateway.deliver import client as smtp_client
from gateway.envelope import Envelope, RecipientState
from gateway.errors import SMTPReply

log = Logger(namespace="exgateway.deliver")


def _state(reply: SMTPReply) -> RecipientState:
    if reply.code < 400:
        return RecipientState.DELIVERED
    if reply.code < 500:
        return RecipientState.PENDING
    return RecipientState.FAILED


def _text(reply: SMTPReply) -> str:
    return " ".join(reply.lines())


class SMTPDelivery:
    def __init__(self, reactor, next_hop: HostPort, helo_name: str, connect_timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.next_hop = next_hop
        self.helo_name = helo_name
        self.connect_timeout = connect_timeout

    @inlineCallbacks
    def deliver(self, envelope: Envelope, recipients: list[str], body: Path):
        try:
            client = yield smtp_client.connect(
                self.reactor, self.next_hop.host, self.next_hop.port, self.helo_name, self.connect_timeout
            )
        except Exception as e:
            reason = f"451 4.4.0 next hop {self.next_hop} unreachable: {e}"
            return {r: (RecipientState.PENDING, reason) for r in recipients}
        results = {}
        try:
            mail = yield client.command(f"MAIL FROM:<{envelope.sender}> SIZE={envelope.size}")
            if mail.code != 250:
                return {r: (_state(mail) if mail.code >= 500 else RecipientState.PENDING, _text(mail)) for r in recipients}
            accepted = []
            for r in recipients:
                reply = yield client.command(f"RCPT TO:<{r}>")
                if reply.code == 250 or reply.code == 251:
                    accepted.append(r)
                else:
                    results[r] = (_state(reply), _text(reply))
            if accepted:
                go = yield client.command("DATA")
                if go.code != 354:
                    final = go
                else:
                    with open(body, "rb") as f:
                        final = yield client.send_body(f, envelope.size)
                for r in accepted:
                    results[r] = (_state(final), _text(final))
            client.quit()
        except Exception as e:
            client.abort()
            reason = f"451 4.4.0 delivery to {self.next_hop} interrupted: {e}"
            # A recipient whose final reply never came stays queued.
            for r in recipients:
                results.setdefault(r, (RecipientState.PENDING, reason))
        return results
