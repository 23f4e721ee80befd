"""
Mailbox delivery to an SMTP next hop (the organisation's mail store).

Connections are kept and reused across messages. All pending recipients of a
message go in one transaction; each recipient's outcome is its own: a 250 to
RCPT and to the final dot delivers it, a 4xx anywhere leaves it queued, a 5xx
fails it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.config.values import HostPort
from gateway.deliver.capabilities import lacks_smtputf8, mail_command, mail_parameters, rcpt_command, rcpt_parameters
from gateway.deliver.client import LoginUnavailable, ReplyTooLong
from gateway.deliver.pool import ConnectionPool
from gateway.deliver.resolve import ResolveError
from gateway.envelope import Envelope, Outcome, RecipientState
from gateway.errors import SMTPReply
from gateway.interfaces import IDeliverer
from gateway.queue.entry import StoredBody

log = Logger(namespace="exgateway.deliver")


def _state(reply: SMTPReply) -> RecipientState:
    if reply.code < 400:
        return RecipientState.DELIVERED
    if reply.code < 500:
        return RecipientState.PENDING
    return RecipientState.FAILED


def _text(reply: SMTPReply) -> str:
    return " ".join(reply.lines())


def _closing(result, f):
    """Close the body's file once its transfer has ended, however it ended."""
    f.close()
    return result


def _outcome(final: SMTPReply, results: dict, accepted: list[str], dsn_action: str = "") -> dict:
    """
    Every accepted recipient's outcome is the reply to the end of the body;
    a delivery to a next hop without DSN is "relayed": a success notice, if
    asked for, is ours to send (RFC 3461 4.1).
    """
    state = _state(final)
    text = Outcome(_text(final), dsn_action) if state is RecipientState.DELIVERED and dsn_action else _text(final)
    results.update(dict.fromkeys(accepted, (state, text)))
    return results


class _Empty:
    @staticmethod
    def read(n: int = -1) -> bytes:
        return b""


@implementer(IDeliverer)
class SMTPDelivery:
    """Delivery over SMTP to one of a list of hosts (tried in turn), over kept connections."""

    def __init__(
        self, reactor, hosts: tuple[HostPort, ...], helo_name: str, connect_timeout: float = 30.0, idle_max: int = 16,
        pool: ConnectionPool | None = None, next_hop: str = "", max_message_size: int | None = None,
        protocol_log=None, connector_id: str = "", security=None, timeouts=None,
    ) -> None:
        self.next_hop = next_hop or ", ".join(map(str, hosts))
        # The send connector's MaxMessageSize: bigger messages fail without a connection.
        self.max_message_size = max_message_size
        # protocol_log: the SMTP Send Protocol Log for a pool made here (the mailbox next hop); None: not logged.
        # security (OutboundSecurity: STARTTLS and AUTH) applies to it too, as on a send connector.
        self.pool = pool or ConnectionPool(
            reactor, hosts, helo_name, connect_timeout, idle_max, protocol_log=protocol_log, connector_id=connector_id,
            security=security, timeouts=timeouts,
        )

    def deliver(self, envelope: Envelope, recipients: list[str], body: StoredBody) -> Deferred:
        """
        One transaction for `recipients`; fires with {recipient: (state, reply)}.
        Written as plain callbacks, not inlineCallbacks: this runs for every
        message, and a generator per call with a resume per reply was a
        measurable share of a delivery's CPU.
        """
        if self.max_message_size is not None and envelope.size > self.max_message_size:
            reason = f"552 5.3.4 message of {envelope.size} bytes is over the send connector's limit of {self.max_message_size}"
            return succeed(dict.fromkeys(recipients, (RecipientState.FAILED, reason)))
        return self._try(envelope, recipients, body, True)

    def _try(self, envelope: Envelope, recipients: list[str], body: StoredBody, first: bool) -> Deferred:
        """On a kept connection first; a second, last try on a fresh one if the kept one turns out closed."""
        d = self.pool.acquire(first)
        d.addCallbacks(
            self._acquired, self._unreachable, callbackArgs=(envelope, recipients, body, first), errbackArgs=(recipients,),
        )
        return d

    def _unreachable(self, failure: Failure, recipients: list[str]):
        e = failure.value
        if isinstance(e, ResolveError):
            state = RecipientState.FAILED if e.permanent else RecipientState.PENDING
            return dict.fromkeys(recipients, (state, e.reply))
        if not isinstance(e, Exception):
            return failure
        if isinstance(e, LoginUnavailable):
            return {r: (RecipientState.PENDING, str(e.reply)) for r in recipients}
        reason = f"451 4.4.0 next hop {self.next_hop} unreachable: {e}"
        return dict.fromkeys(recipients, (RecipientState.PENDING, reason))

    def _acquired(self, acquired, envelope: Envelope, recipients: list[str], body: StoredBody, first: bool) -> Deferred:
        client, reused = acquired
        try:
            d = self._transaction(client, envelope, recipients, body)
        except Exception:
            d = fail()
        d.addCallbacks(
            self._delivered, self._interrupted, callbackArgs=(client,),
            errbackArgs=(client, reused and first, envelope, recipients, body),
        )
        return d

    def _delivered(self, results: dict, client) -> dict:
        self.pool.release(client)
        return results

    def _interrupted(self, failure: Failure, client, retry: bool, envelope: Envelope, recipients: list[str], body: StoredBody):
        if not failure.check(Exception):
            return failure
        client.abort()
        self.pool.discard(client)
        if failure.check(ReplyTooLong) and client.address is not None:
            # A next hop that floods replies is skipped for a while, as one that refuses connections.
            self.pool.health.mark_bad(client.address)
            retry = False
        if retry:
            # A kept connection the next hop has meanwhile closed: one fresh try.
            return self._try(envelope, recipients, body, False)
        reason = f"451 4.4.0 delivery to {self.next_hop} interrupted: {failure.value}"
        return dict.fromkeys(recipients, (RecipientState.PENDING, reason))

    def _transaction(self, client, envelope: Envelope, recipients: list[str], body: StoredBody) -> Deferred:
        """One transaction; MAIL, RCPTs and DATA go in one write where PIPELINING is offered."""
        if lacks_smtputf8(client.extensions, envelope.smtputf8):
            reason = f"550 5.6.7 {self.next_hop} does not support SMTPUTF8, which this message's UTF-8 addresses or headers need"
            return succeed(dict.fromkeys(recipients, (RecipientState.FAILED, reason)))
        limit = client.extensions.get("SIZE", "")
        if limit.isdigit() and int(limit) and envelope.size > int(limit):
            reason = f"552 5.3.4 message of {envelope.size} bytes is over {self.next_hop}'s SIZE limit of {limit}"
            return succeed(dict.fromkeys(recipients, (RecipientState.FAILED, reason)))
        extensions = client.extensions
        mail = mail_command(
            envelope.sender,
            mail_parameters(
                extensions, envelope.size, envelope.body_type or None, envelope.dsn_ret, envelope.dsn_envid, envelope.smtputf8,
            ),
        )
        dsn = {r.address: r for r in envelope.recipients if r.notify or r.orcpt}
        rcpts = [
            rcpt_command(r, rcpt_parameters(extensions, dsn[r].notify, dsn[r].orcpt) if r in dsn else []) for r in recipients
        ]
        if not client.pipelining:
            return self._one_by_one(client, mail, rcpts, envelope, recipients, body)
        pending = client.commands([mail, *rcpts, "DATA"])
        client.flush()
        return pending.addCallback(
            lambda replies: self._finish(client, envelope, recipients, body, replies[0], replies[1:-1], replies[-1])
        )

    @inlineCallbacks
    def _one_by_one(self, client, mail: str, rcpts: list[str], envelope: Envelope, recipients: list[str], body: StoredBody):
        """Without PIPELINING: each command waits for the reply to the one before."""
        first = client.command(mail)
        client.flush()
        mail_reply, rcpt_replies, go = (yield first), [], None
        if mail_reply.code == 250:
            for line in rcpts:
                rcpt_replies.append((yield client.command(line)))  # noqa: PERF401 (each RCPT waits for its reply)
            if any(r.code in (250, 251) for r in rcpt_replies):
                go = yield client.command("DATA")
        return (yield self._finish(client, envelope, recipients, body, mail_reply, rcpt_replies, go))

    def _finish(self, client, envelope: Envelope, recipients: list[str], body: StoredBody, mail_reply, rcpt_replies, go) -> Deferred:
        """After MAIL, RCPTs and DATA: the body if anyone was accepted and the server said 354; the results."""
        if mail_reply.code != 250:
            state = RecipientState.FAILED if mail_reply.code >= 500 else RecipientState.PENDING
            results = {r: (state, _text(mail_reply)) for r in recipients}
        else:
            results = {r: (_state(reply), _text(reply)) for r, reply in zip(recipients, rcpt_replies, strict=False) if reply.code not in (250, 251)}
        accepted = [r for r in recipients if r not in results]
        if go is not None and go.code == 354 and not accepted:
            # Pipelined DATA that a server took although nothing was accepted: end it empty.
            return client.send_body(_Empty(), 0).addCallback(lambda _: results)
        if accepted:
            if go.code == 354:
                f = body.open()
                sent = client.send_body(f, envelope.size)
                sent.addBoth(_closing, f)
                return sent.addCallback(_outcome, results, accepted, self._dsn_action(client))
            return succeed(_outcome(go, results, accepted))
        if go is None and mail_reply.code == 250:
            return client.command("RSET").addCallback(lambda _: results)
        return succeed(results)

    @staticmethod
    def _dsn_action(client) -> str:
        return "" if "DSN" in client.extensions else "relayed"

    def close(self) -> None:
        self.pool.close()
