"""
Puts delivery status notifications into the queue, durably, before the
message they report on is removed: a crash in between may send a notice
twice, never lose it. A notice is an ordinary queued message (null sender,
one recipient: the original sender), delivered like any other.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from gateway.dsnparams import wants
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.dsn import FULL_RETURN_LIMIT, TITLES, build_dsn, read_headers, read_message

log = Logger(namespace="exgateway.queue")


class Notifier:
    def __init__(self, store, ids, clock, fqdn: str, run_in_thread, enqueue, limit=None, tracking=None) -> None:
        self.store = store
        # InternalIds shared with the intake, so a notice never reuses a queue id.
        self.ids = ids
        self.clock = clock
        self.fqdn = fqdn
        self.run_in_thread = run_in_thread
        self.enqueue = enqueue
        # The message tracking log (DSN events), if one is kept.
        self.tracking = tracking
        # Notices per sender domain and hour (queue/noticelimit.py); None: no limit.
        self.limit = limit

    def notify(self, kind: str, envelope: Envelope, recipients: list[Recipient], retry_until: float | None = None) -> Deferred:
        """
        Queue a "failed", "delayed", "delivered" or "relayed" notice to the
        envelope sender about the recipients whose NOTIFY asks for it
        (without NOTIFY: failures and delays); nothing for the null sender.
        """
        recipients = [r for r in recipients if wants(r.notify, kind)]
        if not envelope.sender or not recipients:
            return succeed(None)
        if self.limit is not None and not self.limit.allow(envelope.sender):
            log.warn(
                "{kind} notice for {queue_id} to <{sender}> not sent: the sender's domain had its max_ndrs_per_sender_domain this hour",
                kind={"failed": "non-delivery", "delayed": "delay"}.get(kind, kind), queue_id=envelope.queue_id, sender=envelope.sender,
            )
            return succeed(None)
        full = kind == "failed" and envelope.dsn_ret == "FULL" and envelope.size <= FULL_RETURN_LIMIT
        path = self.store.body_path(envelope.queue_id)
        d = self.run_in_thread(read_message, path, envelope.size) if full else self.run_in_thread(read_headers, path, envelope.size)
        d.addCallback(self._queue, kind, envelope, recipients, retry_until, full)
        return d

    def _queue(self, headers: bytes, kind: str, envelope: Envelope, recipients, retry_until, full: bool = False) -> Deferred:
        now = self.clock.seconds()
        internal_id = self.ids.next()
        message_id = f"<{internal_id}.{kind}@{self.fqdn}>"
        data = build_dsn(
            kind, envelope, recipients, headers, self.fqdn, now, f"exgw-{internal_id}", retry_until, message_id, full=full,
        )
        entry = self.store.create(str(internal_id))
        entry.write(data)
        notice = Envelope(
            queue_id=entry.queue_id, internal_id=internal_id, message_id=message_id, sender="",
            recipients=(Recipient(envelope.sender),), received_at=now, size=len(data), connector="DSN",
            # To a UTF-8 sender, or carrying an internationalised original's
            # headers (RFC 6531/6533): only through a next hop with SMTPUTF8.
            smtputf8=envelope.smtputf8 or not envelope.sender.isascii(),
            reports_on=envelope.queue_id, report_kind=kind, subject=TITLES[kind] + envelope.subject,
        )
        log.info(
            "{kind} notice {notice_id} for {queue_id} to <{sender}> about {count} recipients",
            kind={"failed": "non-delivery", "delayed": "delay"}.get(kind, kind), notice_id=entry.queue_id, queue_id=envelope.queue_id,
            sender=envelope.sender, count=len(recipients),
        )
        if self.tracking is not None:
            self.tracking.event(
                "DSN", "DSN", envelope, [r.address for r in recipients], [r.last_reply or "" for r in recipients],
                connector_id="DSN", related=envelope.sender, reference=message_id, source_context=kind,
            )
        d = self.store.commit(entry, notice)
        d.addCallback(lambda _: self.enqueue(notice, data))
        return d


def success_notices(envelope: Envelope, results: dict) -> dict[str, list[Recipient]]:
    """
    The success notices an attempt owes (RFC 3461 NOTIFY=SUCCESS), by kind:
    recipients it delivered whose reply (an Outcome) says the notice is
    ours to send. Empty, cheaply, for the usual message without NOTIFY.
    """
    out: dict[str, list[Recipient]] = {}
    for r in envelope.recipients:
        if "SUCCESS" not in r.notify or r.address not in results:
            continue
        state, reply = results[r.address]
        action = getattr(reply, "dsn_action", "")
        if state is RecipientState.DELIVERED and action:
            out.setdefault(action, []).append(r)
    return out
