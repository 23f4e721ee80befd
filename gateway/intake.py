"""
The hub's single funnel into the queue.

Every message the hub accepts passes through here: recipients are routed
(or refused at RCPT when there is no route), the body streams into a queue
file, trace headers are put on top (a Received header naming the original
client, HELO and connector, as XFORWARD told us; Message-ID and Date only if
the message has none), and the 250 goes out only after the queue has fsynced.

The original bytes are never touched. If the message does not start with a
header field (a device that sends plain text after DATA), a blank line goes
after our headers, so the client's first line stays body text instead of
being misread as a header: the "first paragraph vanished" complaint.
"""

from __future__ import annotations

import re
from dataclasses import replace

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.address import Address, parse_mailbox
from gateway.dates import rfc5322
from gateway.dsnparams import RecipientDSN
from gateway.envelope import Envelope, Recipient
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.headerfields import header_length
from gateway.headers import HeaderScan
from gateway.interfaces import IMessageHandler, IMessageTransaction
from gateway.journal import Journal, JournalReport
from gateway.queue.entry import QueueEntry
from gateway.queue.store import QueueStore
from gateway.rewrite import Rewriter
from gateway.route.router import Router
from gateway.route.source import RouteSource
from gateway.sign.dkim import BodySigning, Signer
from gateway.smtpd.session import MailFrom, Session

log = Logger(namespace="exgateway.intake")

# Anything but printable ASCII, space and parentheses.
_COMMENT_UNSAFE = re.compile(r"[^\x21-\x27\x2a-\x7e ]")


def _comment_safe(text: str) -> str:
    """Text that cannot break out of a Received header's comment or line: other characters become `_`."""
    return _COMMENT_UNSAFE.sub("_", text)


class InternalIds:
    """
    Exchange-style InternalId: increasing integers, unique per hub. Based on
    the clock in microseconds, and never below what the queue already holds,
    so a clock set back across a restart cannot reuse an id.
    """

    def __init__(self, clock: IReactorTime, floor=lambda: 0, worker: int = 0, workers: int = 1) -> None:
        self.clock = clock
        self.floor = floor
        # The workers of one node take turns (id % workers == worker), so
        # their ids never collide though each has a queue of its own.
        self.worker = worker
        self.workers = workers
        self._last = 0

    def next(self) -> int:
        candidate = max(self._last + 1, int(self.clock.seconds() * 1_000_000), self.floor() + 1)
        self._last = candidate + (self.worker - candidate) % self.workers
        return self._last


def _first_error(failure: Failure) -> Failure:
    """gatherResults' FirstError unwrapped: the failure of the commit that failed."""
    return failure.value.subFailure if isinstance(failure.value, FirstError) else failure


@implementer(IMessageTransaction)
class IntakeTransaction:
    def __init__(self, handler: IntakeHandler, session: Session, mail: MailFrom) -> None:
        self.handler = handler
        self.session = session
        self.mail = mail
        # XFORWARD comes before MAIL and is reset after the transaction.
        self.origin = session.origin()
        # Beside what XFORWARD says, who said it: the node and the address it really connected from.
        self.via = f"{session.node or 'unauthenticated'} [{session.client_ip}]" if session.xforward else ""
        self.recipients: list[str] = []
        # NOTIFY/ORCPT (RFC 3461) of the recipients that had them.
        self.dsn: dict[str, RecipientDSN] = {}
        self.entry: QueueEntry | None = None
        self.internal_id = 0
        self.scan: HeaderScan | None = None
        self.utf8_headers = False
        # Why the body could not be written (ENOSPC), if it could not.
        self.write_error: str | None = None
        # Address rewriting ([[rewrite]], gateway/rewrite.py): once, here, before anything is queued or signed.
        self.sender = handler.rewriter.sender(mail.sender)
        # DKIM (gateway/sign/dkim.py): whether a recipient leaves through a send connector; the signing under way.
        self.remote = False
        self.signing: BodySigning | None = None
        # Journaling (gateway/journal.py): the envelope report written beside the message, if a rule asks for one.
        self.report: JournalReport | None = None
        self.originals: list[str] = []

    def add_recipient(self, recipient: Address, dsn: RecipientDSN | None = None) -> SMTPReply | Deferred:
        rewritten = self.handler.rewriter.recipient(recipient)
        # Defence in depth (the config check refuses such rules): the relay check saw the address as given, so
        # a rewrite out of the accepted domains would relay; keep the address the frontend accepted instead.
        if rewritten != recipient and rewritten.domain not in self.handler.router.accepted_domains:
            log.error("rewrite: not rewriting <{recipient}> to <{rewritten}>, outside the accepted domains",
                      recipient=str(recipient), rewritten=str(rewritten))
        else:
            recipient = rewritten
        # Recipient validation (gateway/policy/recipients.py), if configured, is the router's recipient_exists.
        check = getattr(self.handler.router.recipient_exists, "check", None)
        checked = check(recipient) if check is not None else None
        if isinstance(checked, Deferred):
            return checked.addCallback(lambda _: self._route(recipient, dsn))
        return self._route(recipient, dsn)

    def _route(self, recipient: Address, dsn: RecipientDSN | None = None) -> SMTPReply:
        # The rewritten sender, as the envelope stores it and the scheduler routes it (RouteSource.of): routing on
        # the original here could 250 a recipient the first delivery attempt then finds no route for.
        source = RouteSource(str(self.sender), self.origin.connector, self.origin.auth)
        hop = self.handler.router.route(recipient, source)
        if hop is None:
            raise SMTPError(Reply.NO_ROUTE, recipient=str(recipient))
        self.remote = self.remote or not hop.is_mailbox
        if str(recipient) not in self.recipients:
            self.recipients.append(str(recipient))
            if dsn is not None:
                self.dsn[str(recipient)] = dsn
        return Reply.RECIPIENT_OK

    def open_body(self) -> None:
        self.entry = self.handler.store.open_entry(self.handler.ids.next)
        self.internal_id = int(self.entry.queue_id)
        self.scan = HeaderScan(self.session.connector.max_header_size)
        self._open_journal()

    def _open_journal(self) -> None:
        """Bcc journals join the envelope (never the header); an envelope report gets a queue entry of its own."""
        self.originals = list(self.recipients)
        bcc, reports = self.handler.journal.targets(str(self.sender), self.recipients)
        for address in bcc:
            try:
                self._route(parse_mailbox(address), RecipientDSN(notify="NEVER"))
            except SMTPError:
                log.error("journal: no route to {journal}; message from <{sender}> not journaled", journal=address, sender=str(self.sender))
        if reports:
            entry = self.handler.store.open_entry(self.handler.ids.next)
            self.report = JournalReport(entry, reports, self.handler.fqdn, self.handler.journal.random)

    def write(self, data: bytes) -> None:
        if self.write_error is not None:
            return  # the rest of the body is read and dropped; the end of data gets the 451
        scan, entry = self.scan, self.entry
        # open_body made both; abort() drops the entry only after a write error (above).
        assert scan is not None and entry is not None
        try:
            if scan.done:
                entry.write(data)
                if self.signing is not None:
                    self.signing.update(data)
                if self.report is not None:
                    self.report.write(data)
                return
            scan.feed(data)
            if scan.done:
                self._flush_headers()
        except OSError as e:
            # A full disk mid-DATA: not a crash of the session, a 451 at the end of the message.
            self.write_error = e.strerror or str(e)
            self.abort()

    def _flush_headers(self) -> None:
        scan, entry = self.scan, self.entry
        assert scan is not None and entry is not None
        message_id = scan.message_id or self.handler.new_message_id(self.internal_id)
        trace = [self._received()]
        if not scan.message_id:
            trace.append(f"Message-ID: {message_id}\r\n")
        if not scan.has_date:
            trace.append(f"Date: {rfc5322(self.handler.clock.seconds())}\r\n")
        if not scan.has_header and not scan.buffer.startswith((b"\r\n", b"\n")) and scan.buffer:
            trace.append("\r\n")
        self.message_id = message_id
        end = scan.buffer.find(b"\r\n\r\n")
        # RFC 6532 headers: with SMTPUTF8 they make the message need a SMTPUTF8 next hop.
        self.utf8_headers = not scan.buffer[: end if end >= 0 else len(scan.buffer)].isascii()
        data = "".join(trace).encode("utf-8")
        entry.write(data)
        rest = bytes(scan.buffer)
        if self.handler.rewriter and scan.has_header:
            end, _ = header_length(rest)
            rest = self.handler.rewriter.header(rest[:end]) + rest[end:]
        entry.write(rest)
        if self.report is not None:
            self.report.start(self.handler.clock.seconds(), str(self.sender), self.originals, message_id, scan.subject)
            self.report.write(data)
            self.report.write(rest)
        signer = self.handler.signer
        if signer and (self.remote or signer.sign_local) and not scan.too_large:
            self._begin_signing(signer, data + rest)
        scan.buffer = bytearray()

    def _begin_signing(self, signer: Signer, start: bytes) -> None:
        """Sign the header section as it will be queued; the body hash starts with the body bytes already here."""
        end, ended = header_length(start)
        if not ended:
            return
        try:
            self.signing = signer.begin(start[:end])
        except Exception:
            log.failure("dkim: could not start signing {queue_id}; sent unsigned",
                        queue_id=self.entry.queue_id if self.entry is not None else "")
            return
        if self.signing is not None:
            body = start[end:]
            self.signing.update(body[2:] if body.startswith(b"\r\n") else body[1:])

    def _received(self) -> str:
        origin = self.origin
        helo = _comment_safe(origin.helo) or "unknown"
        date = rfc5322(self.handler.clock.seconds())
        connector = _comment_safe(origin.connector).replace("\\", "\\\\").replace('"', "'")
        address = f"IPv6:{origin.client_ip}" if ":" in origin.client_ip else origin.client_ip
        extra = ""
        if origin.tls:
            version, _, rest = _comment_safe(origin.tls).partition(" ")
            cipher, _, thumbprint = rest.partition(" ")
            extra += f"\t(version={version} cipher={cipher} certificate={thumbprint})\r\n"
        if origin.auth:
            extra += f"\t(authenticated as {_comment_safe(origin.auth)})\r\n"
        if self.via:
            extra += f"\t(forwarded by gateway node {_comment_safe(self.via)})\r\n"
        return (
            f"Received: from {helo} ([{address}])\r\n"
            f"\tby {self.handler.fqdn} (exgateway) with {_comment_safe(origin.proto)}\r\n"
            f"{extra}"
            f'\t(connector "{connector}") id {self.internal_id};\r\n'
            f"\t{date}\r\n"
        )

    def finish(self) -> Deferred:
        if self.write_error is not None:
            raise SMTPError(Reply.LOCAL_ERROR, reason=f"queue write failed: {self.write_error}")
        scan, entry = self.scan, self.entry
        # open_body made both; only a write error (above) drops the entry before the end.
        assert scan is not None and entry is not None
        if not scan.done:
            scan.finish()
            self._flush_headers()
        if scan.too_large:
            self.abort()
            raise SMTPError(Reply.HEADER_TOO_LARGE)
        if scan.received > self.session.connector.max_hop_count:
            self.abort()
            raise SMTPError(Reply.HOP_COUNT_EXCEEDED, hops=scan.received)
        envelope = Envelope(
            queue_id=entry.queue_id,
            internal_id=self.internal_id,
            message_id=self.message_id,
            sender=str(self.sender),
            recipients=tuple(self._recipient(r) for r in self.recipients),
            received_at=self.handler.clock.seconds(),
            size=entry.size,
            client_ip=self.origin.client_ip,
            helo=self.origin.helo,
            connector=self.origin.connector,
            # Who submitted it, for tracking and NDRs: the AUTH login and the TLS session, if any.
            auth=self.origin.auth or "",
            tls=self.origin.tls or "",
            via=self.via or "",
            subject=(scan.subject or "")[:256],
            body_type=self.mail.body or "",
        )
        if self.mail.dsn is not None:
            envelope = replace(envelope, dsn_ret=self.mail.dsn.ret, dsn_envid=self.mail.dsn.envid)
        if self.mail.smtputf8 and (self.utf8_headers or not all(a.isascii() for a in (envelope.sender, *self.recipients))):
            envelope = replace(envelope, smtputf8=True)
        if self.signing is not None:
            try:
                envelope = replace(
                    envelope, dkim=self.signing.finish(self.handler.clock.seconds()), dkim_local=bool(self.handler.signer.sign_local),
                )
            except Exception:
                log.failure("dkim: could not sign {queue_id}; sent unsigned", queue_id=entry.queue_id)
        self.entry = None
        d = self.handler.store.commit(entry, envelope)
        if self.report is not None:
            d = self._commit_report(d, envelope)
        d.addCallbacks(lambda _: self.handler.queued(envelope, entry.kept, self.session.server_ip), self._not_committed)
        return d

    def _commit_report(self, committed: Deferred, envelope: Envelope) -> Deferred:
        """The journal report goes into the same group commit; the 250 waits for both."""
        report, self.report = self.report, None
        assert report is not None  # finish() calls this only when there is one
        report_envelope = report.finish(self.handler.clock.seconds(), int(report.entry.queue_id), envelope)
        d = gatherResults([committed, self.handler.store.commit(report.entry, report_envelope)], consumeErrors=True)
        d.addErrback(_first_error)

        def queued(result):
            log.info("journal report {report_id} for {queue_id} to {journal}", report_id=report_envelope.queue_id,
                     queue_id=envelope.queue_id, journal=", ".join(report.journal_recipients))
            self.handler.scheduler.enqueue(report_envelope, report.entry.kept, just_acknowledged=True)
            return result

        return d.addCallback(queued)

    def _recipient(self, address: str) -> Recipient:
        dsn = self.dsn.get(address)
        return Recipient(address) if dsn is None else Recipient(address, notify=dsn.notify, orcpt=dsn.orcpt)

    @staticmethod
    def _not_committed(failure):
        """The commit's write or fsync failed (a full disk): a clean 451 for the client, one log line, no traceback."""
        if failure.check(OSError):
            raise SMTPError(Reply.LOCAL_ERROR, reason=f"queue commit failed: {failure.value.strerror or failure.getErrorMessage()}")
        return failure

    def abort(self) -> None:
        if self.report is not None:
            self.handler.store.discard(self.report.entry)
            self.report = None
        if self.entry is not None:
            self.handler.store.discard(self.entry)
            self.entry = None


@implementer(IMessageHandler)
class IntakeHandler:
    """MailHandler of hub connectors: accepts into the durable queue."""

    def __init__(
        self, store: QueueStore, router: Router, scheduler, clock: IReactorTime, fqdn: str, worker: int = 0, workers: int = 1,
        ids: InternalIds | None = None, tracking=None, pressure=None,
    ) -> None:
        self.store = store
        self.router = router
        self.scheduler = scheduler
        self.clock = clock
        self.fqdn = fqdn
        # Shared with the scheduler's Notifier (gateway/service.py makes one for both), so a notice never reuses an id.
        self.ids = ids if ids is not None else InternalIds(clock, lambda: store.highest_id, worker, workers)
        # The message tracking log (RECEIVE events), if one is kept.
        self.tracking = tracking
        # BackPressure (gateway/policy/backpressure.py): MAIL refused while the queue's disk is nearly full.
        self.pressure = pressure
        self.rewriter = Rewriter()
        self.signer = Signer()
        self.journal = Journal()

    def configure(self, config) -> None:
        """The settings of the intake's own stages, at start and at each reload (gateway/reload.py)."""
        self.rewriter = Rewriter(config.rewrite)
        self.signer = Signer(config.dkim)
        self.journal = Journal(config.journal_rules, self.journal.random)

    def begin(self, session: Session, mail: MailFrom) -> IntakeTransaction:
        if self.pressure is not None and self.pressure.refusing:
            raise SMTPError(Reply.INSUFFICIENT_RESOURCES, reason=self.pressure.reason())
        return IntakeTransaction(self, session, mail)

    def new_message_id(self, internal_id: int) -> str:
        return f"<{internal_id}@{self.fqdn}>"

    def queued(self, envelope: Envelope, body: bytes | None = None, server_ip: str = "") -> SMTPReply:
        """
        The 250 for a message now durable in the queue. Its log record is
        written in the next reactor turn, once the 250 is on the wire: the
        client's next command need not wait for it. A crash in between
        loses the record, never the message.
        """
        self.clock.callLater(0, self._record_received, envelope, server_ip)
        self.scheduler.enqueue(envelope, body, just_acknowledged=True)
        return Reply.QUEUED.format(message_id=envelope.message_id, internal_id=envelope.internal_id, hostname=self.fqdn)

    def _record_received(self, envelope: Envelope, server_ip: str) -> None:
        if self.tracking is not None:
            # The tracking log's RECEIVE event says all of this; the process log keeps to what needs attention.
            self.tracking.event("RECEIVE", "SMTP", envelope, [r.address for r in envelope.recipients], server_ip=server_ip)
        else:
            self._log_queued(envelope)

    @staticmethod
    def _log_queued(envelope: Envelope) -> None:
        log.info(
            "queued {queue_id} {message_id} from <{sender}> for {rcpt_count} recipients, {size} bytes, client {client_ip}"
            " via {connector}{auth_text}",
            queue_id=envelope.queue_id,
            message_id=envelope.message_id,
            sender=envelope.sender,
            rcpt_count=len(envelope.recipients),
            size=envelope.size,
            client_ip=envelope.client_ip,
            connector=envelope.connector,
            auth=envelope.auth,
            auth_text=f" as {envelope.auth}" if envelope.auth else "",
        )
