"""
Mailbox delivery to an SMTP next hop (the organisation's mail store).

Connections are kept and reused across messages. All pending recipients of a
message go in one transaction; each recipient's outcome is its own: a 250 to
RCPT and to the final dot delivers it, a 4xx anywhere leaves it queued, a 5xx
fails it.
"""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from gateway.config import HostPort
from gateway.deliver.pool import ConnectionPool
from gateway.deliver.resolve import ResolveError
from gateway.envelope import Envelope, RecipientState
from gateway.queue.store import StoredBody
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


class _Empty:
    @staticmethod
    def read(n: int = -1) -> bytes:
        return b""


class SMTPDelivery:
    """Delivery over SMTP to one of a list of hosts (tried in turn), over kept connections."""

    def __init__(
        self, reactor, hosts: tuple[HostPort, ...], helo_name: str, connect_timeout: float = 30.0, idle_max: int = 16,
        pool: ConnectionPool | None = None, next_hop: str = "", max_message_size: int | None = None,
    ) -> None:
        self.next_hop = next_hop or ", ".join(map(str, hosts))
        # The send connector's MaxMessageSize: bigger messages fail without a connection.
        self.max_message_size = max_message_size
        self.pool = pool or ConnectionPool(reactor, hosts, helo_name, connect_timeout, idle_max)

    @inlineCallbacks
    def deliver(self, envelope: Envelope, recipients: list[str], body: StoredBody):
        if self.max_message_size is not None and envelope.size > self.max_message_size:
            reason = f"552 5.3.4 message of {envelope.size} bytes is over the send connector's limit of {self.max_message_size}"
            return {r: (RecipientState.FAILED, reason) for r in recipients}
        reuse = True
        for _ in range(2):
            try:
                client, reused = yield self.pool.acquire(reuse)
            except ResolveError as e:
                state = RecipientState.FAILED if e.permanent else RecipientState.PENDING
                return {r: (state, e.reply) for r in recipients}
            except Exception as e:
                reason = f"451 4.4.0 next hop {self.next_hop} unreachable: {e}"
                return {r: (RecipientState.PENDING, reason) for r in recipients}
            try:
                results = yield self._transaction(client, envelope, recipients, body)
            except Exception as e:
                client.abort()
                self.pool.discard(client)
                if reused:
                    # A kept connection the next hop has meanwhile closed: one fresh try.
                    reuse = False
                    continue
                reason = f"451 4.4.0 delivery to {self.next_hop} interrupted: {e}"
                return {r: (RecipientState.PENDING, reason) for r in recipients}
            self.pool.release(client)
            return results

    @inlineCallbacks
    def _transaction(self, client, envelope: Envelope, recipients: list[str], body: StoredBody):
        """One transaction; MAIL, RCPTs and DATA go in one write where PIPELINING is offered."""
        limit = client.extensions.get("SIZE", "")
        if limit.isdigit() and int(limit) and envelope.size > int(limit):
            reason = f"552 5.3.4 message of {envelope.size} bytes is over {self.next_hop}'s SIZE limit of {limit}"
            return {r: (RecipientState.FAILED, reason) for r in recipients}
        mail = f"MAIL FROM:<{envelope.sender}> SIZE={envelope.size}"
        if envelope.extra.get("body") == "8BITMIME" and "8BITMIME" in client.extensions:
            mail += " BODY=8BITMIME"
        rcpts = [f"RCPT TO:<{r}>" for r in recipients]
        if client.pipelining:
            pending = client.commands([mail, *rcpts, "DATA"])
            client.flush()
            replies = yield pending
            mail_reply, rcpt_replies, go = replies[0], replies[1:-1], replies[-1]
        else:
            first = client.command(mail)
            client.flush()
            mail_reply, rcpt_replies, go = (yield first), [], None
            if mail_reply.code == 250:
                for line in rcpts:
                    rcpt_replies.append((yield client.command(line)))
                if any(r.code in (250, 251) for r in rcpt_replies):
                    go = yield client.command("DATA")
        if mail_reply.code != 250:
            state = RecipientState.FAILED if mail_reply.code >= 500 else RecipientState.PENDING
            results = {r: (state, _text(mail_reply)) for r in recipients}
        else:
            results = {r: (_state(reply), _text(reply)) for r, reply in zip(recipients, rcpt_replies) if reply.code not in (250, 251)}
        accepted = [r for r in recipients if r not in results]
        if go is not None and go.code == 354 and not accepted:
            # Pipelined DATA that a server took although nothing was accepted: end it empty.
            yield client.send_body(_Empty(), 0)
        elif accepted:
            if go.code == 354:
                with body.open() as f:
                    go = yield client.send_body(f, envelope.size)
            results.update({r: (_state(go), _text(go)) for r in accepted})
        if go is None and mail_reply.code == 250:
            yield client.command("RSET")
        return results

    def close(self) -> None:
        self.pool.close()
