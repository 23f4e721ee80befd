"""
The frontend's hand-off to the hub: the frontend holds no queue.

Like Exchange's Front End Transport, the frontend proxies each transaction
to a hub: at the first recipient it takes a connection from the hub pool,
tells the hub who the real client is (XFORWARD: address, port, HELO,
protocol, connector), sends MAIL and the recipient, and passes the hub's
answer back. Where the hub offers PIPELINING that first RCPT goes in one
write with XFORWARD and MAIL: one round trip to the hub, not two (a RCPT
behind a MAIL the hub refused gets a 503 that is never the client's answer:
the refusal is). The body is spooled (memory, then a temporary file past a
threshold). Where the hub offers CHUNKING and PIPELINING, a large body goes
on to the hub in non-LAST BDAT chunks while it arrives
(gateway/hubstream.py), and the client's end of data sends the rest as
`BDAT <n> LAST`; a small one is one BDAT LAST at the end (one write, no
354 round trip, no dot-stuffing). Without CHUNKING the spooled body goes
with DATA at the end. The client's final reply is the hub's. If no hub
answers, the client gets a 4xx and nothing is half-accepted.

Failover: a hub that breaks the connection, times out, or answers 4xx to
MAIL, to DATA or at the end of the message is marked down (AddressHealth)
and the transaction is replayed on the next hub within the same client
session: MAIL, the recipients accepted so far (each must be accepted again),
and the spooled body. The client still gets one reply per command. A hub
that committed the message but lost the connection before its 250 arrived
may deliver it too: a duplicate is allowed, a loss is not. A hub out of
step (a reply that answers nothing: a 250 to DATA, a 354 or a 220 at the
end of the message) is failed over the same way; its reply never reaches
the client, who could take a 2xx for a message no hub committed
(gateway/errors.py out_of_step).

Hub connections are kept and reused for the next transaction, so a busy
frontend does not pay a TCP and EHLO round trip per message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.address import Address
from gateway.deliver.capabilities import mail_parameters, rcpt_parameters
from gateway.deliver.client import SMTPClient
from gateway.deliver.pool import NoHostAvailable
from gateway.dsnparams import RecipientDSN
from gateway.errors import Reply, SMTPError, SMTPReply, out_of_step
from gateway.hubstream import STREAM_FROM, HubStream, streams_to
from gateway.interfaces import IMessageHandler, IMessageTransaction
from gateway.smtpd import xtext
from gateway.smtpd.session import MailFrom, Session

log = Logger(namespace="exgateway.proxy")

SPOOL_IN_MEMORY = 512 * 1024
# Other hubs tried within one client transaction before the client gets a 4xx.
MAX_FAILOVERS = 2


def xforward_line(session: Session, offered: str | None = None) -> str:
    """XFORWARD with the original client's attributes (only those the hub offered, if it said)."""
    origin = session.origin()
    addr = origin.client_ip if ":" not in origin.client_ip else "IPV6:" + origin.client_ip
    attrs = [
        ("ADDR", addr),
        ("PORT", str(origin.client_port)),
        ("PROTO", origin.proto),
        ("HELO", origin.helo[:255]),
        ("CONNECTOR", origin.connector),
        ("AUTH", origin.auth),
        ("TLS", origin.tls),
    ]
    known = set(offered.upper().split()) if offered else None
    return "XFORWARD " + " ".join(f"{k}={xtext.encode(v)}" for k, v in attrs if v and (known is None or k in known))


@implementer(IMessageTransaction)
class FrontendTransaction:
    def __init__(self, handler: ProxyHandler, session: Session, mail: MailFrom) -> None:
        self.handler = handler
        self.session = session
        self.mail = mail
        self.client: SMTPClient | None = None
        self.spool: IO[bytes] | None = None
        self.size = 0
        self.aborted = False
        # Recipients the hub accepted (replayed on failover), the hub's address, failovers so far.
        self.recipients: list[Address] = []
        # NOTIFY/ORCPT per recipient that had them, passed on to the hub.
        self.dsn: dict[Address, RecipientDSN] = {}
        self.hub_address = None
        self.failovers = 0
        # Why the body could not be spooled (ENOSPC), if it could not.
        self.spool_error: str | None = None
        # The body going on to the current hub while it arrives; whether that was considered for this body.
        self.stream: HubStream | None = None
        self.stream_checked = False

    # --- envelope -------------------------------------------------------------

    def add_recipient(self, recipient: Address, dsn: RecipientDSN | None = None) -> Deferred:
        if dsn is not None:
            self.dsn[recipient] = dsn
        if self.client is None:
            # The first recipient goes with MAIL: one round trip to the hub, not two, where it pipelines.
            d = self._open(reuse=True, first=recipient)
            d.addCallback(self._rcpt_answered, recipient)
            d.addErrback(self._rcpt_failed, recipient)
            return d
        return self._rcpt(succeed(None), recipient)

    def _rcpt_line(self, recipient: Address) -> str:
        """RCPT with the client's NOTIFY/ORCPT where the hub offers DSN (ours does)."""
        dsn = self.dsn.get(recipient)
        if dsn is None or self.client is None:
            return f"RCPT TO:{recipient.path}"
        return " ".join([f"RCPT TO:{recipient.path}", *rcpt_parameters(self.client.extensions, dsn.notify, dsn.orcpt)])

    def _rcpt(self, d: Deferred, recipient: Address) -> Deferred:
        d.addCallback(lambda _: self._command(self._rcpt_line(recipient)))
        d.addCallback(self._rcpt_answered, recipient)
        d.addErrback(self._rcpt_failed, recipient)
        return d

    def _rcpt_answered(self, reply: SMTPReply, recipient: Address) -> SMTPReply:
        if reply.code == 421:
            raise SMTPError(Reply.HUB_UNAVAILABLE, reason=f"hub closing: {reply}", hub_down=True)
        if reply.code not in (250, 251) and reply.code < 400:
            raise out_of_step(reply, "RCPT")
        if reply.positive:
            self.recipients.append(recipient)
        return reply

    def _rcpt_failed(self, failure: Failure, recipient: Address):
        if self._can_fail_over(failure):
            self._hub_down(failure, "RCPT")
            return self._rcpt(self._replay(), recipient)
        return self._hub_failed(failure, "RCPT")

    # --- failover ---------------------------------------------------------------

    def _can_fail_over(self, failure: Failure) -> bool:
        if self.aborted or self.failovers >= MAX_FAILOVERS or failure.check(NoHostAvailable):
            return False
        if isinstance(failure.value, SMTPError):
            return bool(failure.value.log_fields.get("hub_down"))
        return True

    def _hub_down(self, failure: Failure, stage: str) -> None:
        self.failovers += 1
        if self.hub_address is not None:
            self.handler.pool.health.mark_bad(self.hub_address)
        log.warn(
            "session {session_id}: hub {hub} failed at {stage} ({error}); replaying the transaction on the next hub",
            session_id=self.session.session_id, hub=str(self.hub_address), stage=stage, error=failure.getErrorMessage(),
        )
        self._drop_client()

    def _replay(self) -> Deferred:
        """On a fresh connection to another hub: MAIL, then every recipient accepted so far."""
        d = self._open(reuse=False)
        for r in list(self.recipients):
            d.addCallback(self._replay_rcpt, r)
            d.addCallback(self._replayed, r)
        return d

    def _replay_rcpt(self, _: object, recipient: Address) -> Deferred:
        return self._command(self._rcpt_line(recipient))

    @staticmethod
    def _replayed(reply: SMTPReply, recipient: Address) -> None:
        if reply.code != 250:
            raise SMTPError(Reply.HUB_UNAVAILABLE, reason=f"the next hub answered {reply} for {recipient} on replay")

    def _open(self, reuse: bool, first: Address | None = None) -> Deferred:
        """
        A hub connection with MAIL accepted. With `first`, fires with the
        hub's reply to that recipient's RCPT: pipelined behind MAIL where the
        hub offers PIPELINING, else sent once MAIL has its 250.
        """
        d = self._mail(reuse, first)
        if first is not None:
            d.addCallback(self._first_rcpt, first)
        return d

    def _first_rcpt(self, pipelined: list | None, first: Address):
        """The reply to the first RCPT: the pipelined one's outcome (a reply or a Failure), or RCPT sent now."""
        if pipelined is None:
            return self._command(self._rcpt_line(first))
        return pipelined[0]

    def _mail(self, reuse: bool, first: Address | None) -> Deferred:
        d = self.handler.pool.acquire(reuse)
        d.addCallback(self._start_mail, first)
        return d

    def _start_mail(self, acquired, first: Address | None = None) -> Deferred:
        """
        XFORWARD and MAIL on the acquired connection (and RCPT for `first`
        where the hub pipelines); fires once MAIL is accepted with
        [the pipelined RCPT's outcome], or None where none was pipelined. A
        RCPT behind a refused MAIL gets a 503 that is never the client's
        answer: the refusal is.
        """
        client, reused = acquired
        if self.aborted:
            self.handler.pool.release(client)
            raise SMTPError(Reply.HUB_UNAVAILABLE, reason="client went away")
        self.client = client
        self.hub_address = client.address
        lines = []
        if "XFORWARD" in client.extensions:
            lines.append(xforward_line(self.session, client.extensions["XFORWARD"]))
        mail = f"MAIL FROM:{self.mail.sender.path}"
        if "SIZE" in client.extensions and self.mail.size is not None:
            mail += f" SIZE={self.mail.size}"
        if "8BITMIME" in client.extensions and self.mail.body:
            mail += f" BODY={self.mail.body}"
        if self.mail.dsn is not None or self.mail.smtputf8:
            dsn = self.mail.dsn
            mail = " ".join([mail, *mail_parameters(
                client.extensions, None, None, dsn.ret if dsn else "", dsn.envid if dsn else "", self.mail.smtputf8,
            )])
        lines.append(mail)
        d = self._commands(client, lines)
        # The pipelined RCPT's outcome, kept in a list so that a Failure nobody asks for (MAIL failed first) is not an unhandled error.
        rcpt: Deferred | None = None
        if first is not None and client.pipelining:
            rcpt = client.command(self._rcpt_line(first)).addBoth(lambda outcome: [outcome])

        def check(replies: list[SMTPReply]):
            *xforward, mail_reply = replies
            if xforward and xforward[0].code != 250:
                # The hub connector does not trust this frontend: an admin's
                # problem, not the client's; the client just tries later.
                log.error("hub refused XFORWARD: {reply}; does its connector grant ExchangeServers?", reply=str(xforward[0]))
                self._drop_client()
                raise SMTPError(Reply.HUB_UNAVAILABLE, reason="hub refused XFORWARD")
            if mail_reply.code != 250:
                self.client = None
                error = out_of_step(mail_reply, "MAIL")
                if mail_reply.code >= 400:
                    if rcpt is None:
                        self.handler.pool.release(client)
                        raise error

                    def settled(_: object):
                        # The pipelined RCPT has had its 503 (or the connection went): the connection is free.
                        self.handler.pool.release(client)
                        raise error

                    return rcpt.addCallback(settled)
                # Out of step: its next answers cannot be trusted to belong to the next command.
                client.abort()
                self.handler.pool.discard(client)
                raise error
            # Waits for the pipelined RCPT's reply, already on its way.
            return rcpt

        def retry_fresh(failure: Failure):
            # A kept connection the hub has meanwhile closed: one fresh try.
            if reused and not failure.check(SMTPError):
                if failure.check(TimeoutError) and client.address is not None:
                    # Not closed but silent (a frozen hub): the fresh try goes to another hub first.
                    self.handler.pool.health.mark_bad(client.address)
                    log.warn(
                        "session {session_id}: hub {hub} did not answer MAIL in time; marked down, trying the next hub",
                        session_id=self.session.session_id, hub=str(client.address),
                    )
                self._drop_client()
                return self._mail(False, first)
            return failure

        d.addCallback(check)
        d.addErrback(retry_fresh)
        return d

    @staticmethod
    def _commands(client: SMTPClient, lines: list[str]) -> Deferred:
        """The replies to `lines`, in order: one pipelined group (one write, one Deferred) where the hub pipelines, else one by one."""
        if client.pipelining:
            return client.commands(lines)
        replies: list[SMTPReply] = []

        def send(_: object, line: str) -> Deferred:
            return client.command(line)

        d: Deferred = succeed(None)
        for line in lines:
            d.addCallback(send, line)
            d.addCallback(replies.append)
        return d.addCallback(lambda _: replies)

    def _command(self, line: str) -> Deferred:
        if self.aborted or self.client is None:
            raise SMTPError(Reply.HUB_UNAVAILABLE, reason="transaction gone")
        return self.client.command(line)

    def _hub_failed(self, failure: Failure, stage: str):
        if failure.check(SMTPError):
            return failure
        log.warn(
            "session {session_id}: hand-off to hub failed at {stage}: {error}",
            session_id=self.session.session_id,
            stage=stage,
            error=failure.getErrorMessage(),
        )
        self._drop_client()
        raise SMTPError(Reply.HUB_UNAVAILABLE, reason=failure.getErrorMessage())

    # --- body ----------------------------------------------------------------------

    def open_body(self) -> None:
        spool_dir = self.handler.spool_dir
        # Held until the hub has answered for the message (or failover has run out).
        self.spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY, dir=None if spool_dir is None else str(spool_dir),
        )

    def write(self, data: bytes) -> None:
        if self.spool_error is not None:
            return
        # open_body made it; a spool error (above) or an abort ends the writes.
        assert self.spool is not None
        try:
            self.spool.write(data)
        except OSError as e:
            # The spool's disk is full: the rest is read and dropped, the end of data gets a 451, the session goes on.
            self.spool_error = e.strerror or str(e)
            self._close_spool()
            return
        self.size += len(data)
        if self.stream is not None:
            self.stream.feed(data)
        elif not self.stream_checked and self.size >= STREAM_FROM:
            self.stream_checked = True
            client = self.client
            if client is not None and streams_to(client):
                self.stream = HubStream(client, self.spool, self.size)
                self.stream.start()

    def finish(self) -> Deferred:
        if self.spool_error is not None:
            self._return_client()
            raise SMTPError(Reply.LOCAL_ERROR, reason=f"spooling the message failed: {self.spool_error}")
        if self.client is None:
            raise SMTPError(Reply.HUB_UNAVAILABLE, reason="no hub connection")
        stream = self.stream
        if stream is None:
            return self._send_body().addCallbacks(self._delivered, self._body_failed)
        # RFC 3030: the LAST chunk goes only once every streamed chunk has its 250 (a refused one ends the transaction).
        d = stream.end()
        d.addCallback(lambda _: self._send_body())
        return d.addCallbacks(self._delivered, self._body_failed)

    def _send_body(self) -> Deferred:
        """The spooled body (what was not streamed of it) to the current hub; fires with its final reply (a 4xx is an errback: that hub is down)."""
        client = self.client
        spool = self.spool
        stream, self.stream = self.stream, None
        if client is None or spool is None:
            # The hub connection or the spool went while streamed chunks were answered.
            return fail(SMTPError(Reply.HUB_UNAVAILABLE, reason="transaction gone"))
        offset = 0
        if stream is not None and stream.client is client:
            if stream.failure is not None:
                return fail(stream.failure)
            offset = stream.streamed

        def go_ahead(reply: SMTPReply):
            if reply.code != 354:
                raise out_of_step(reply, "DATA")
            return client.send_body(spool, self.size)

        def final(reply: SMTPReply) -> SMTPReply:
            if reply.code == 250 or reply.code >= 500:
                # Accepted, or refused for good: the client's answer.
                return reply
            # A 4xx: that hub is down (the next one is tried); anything else: out of step, never the client's answer.
            raise out_of_step(reply, "the end of data")

        spool.seek(offset)
        if "CHUNKING" in client.extensions:
            # One write, one reply, no dot-stuffing on either side.
            d = client.send_bdat(spool, self.size - offset)
        else:
            d = client.command("DATA")
            d.addCallback(go_ahead)
        return d.addCallback(final)

    def _delivered(self, reply: SMTPReply) -> SMTPReply:
        self._close_spool()
        client, self.client = self.client, None
        self.handler.pool.release(client)
        # Success is logged by the hub (queued ...); a refusal by the protocol.
        return reply

    def _body_failed(self, failure: Failure):
        if self._can_fail_over(failure):
            self._hub_down(failure, "DATA")
            d = self._replay()
            d.addCallback(lambda _: self._send_body())
            return d.addCallbacks(self._delivered, self._body_failed)
        self._close_spool()
        if not isinstance(failure.value, SMTPError):
            return self._hub_failed(failure, "DATA")
        if failure.value.log_fields.get("hub_down"):
            self._drop_client()
        else:
            self._return_client()
        return failure

    def _end_stream(self) -> None:
        """Nothing more streams to the hub: it is done with, or the body is (chunks still unanswered make the connection busy)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.end()

    def _close_spool(self) -> None:
        self._end_stream()
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def abort(self) -> None:
        self.aborted = True
        self._close_spool()
        self._return_client()

    def _return_client(self) -> None:
        """Give the hub connection back to the pool, its transaction reset (RSET), or drop it if it is mid-reply."""
        self._end_stream()
        client, self.client = self.client, None
        if client is None:
            return
        if client.busy or not client.connected:
            client.abort()
            self.handler.pool.discard(client)
            return
        client.command("RSET").addCallbacks(lambda _: self.handler.pool.release(client), lambda _: None)

    def _drop_client(self) -> None:
        self._end_stream()
        client, self.client = self.client, None
        if client is not None:
            client.abort()
            self.handler.pool.discard(client)


@implementer(IMessageHandler)
class ProxyHandler:
    """MailHandler of frontend connectors."""

    def __init__(self, pool, spool_dir: Path | None = None) -> None:
        """pool: a ConnectionPool to the hubs."""
        self.pool = pool
        self.spool_dir = spool_dir

    def begin(self, session: Session, mail: MailFrom) -> FrontendTransaction:
        return FrontendTransaction(self, session, mail)
