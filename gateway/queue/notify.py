"""
Puts delivery status notifications into the queue, durably, before the
message they report on is removed: a crash in between may send a notice
twice, never lose it. A notice is an ordinary queued message (null sender,
one recipient: the original sender), delivered like any other.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from gateway.envelope import Envelope, Recipient
from gateway.queue.dsn import build_dsn, read_headers

log = Logger(namespace="exgateway.queue")


class Notifier:
    def __init__(self, store, ids, clock, fqdn: str, run_in_thread, enqueue) -> None:
        self.store = store
        # InternalIds shared with the intake, so a notice never reuses a queue id.
        self.ids = ids
        self.clock = clock
        self.fqdn = fqdn
        self.run_in_thread = run_in_thread
        self.enqueue = enqueue
        # The message tracking log (DSN events), if one is kept.
        self.tracking = None
        # Notices per sender domain and hour (queue/noticelimit.py); None: no limit.
        self.limit = None

    def notify(self, kind: str, envelope: Envelope, recipients: list[Recipient], retry_until: float | None = None) -> Deferred:
        """Queue a "failed" or "delayed" notice to the envelope sender; nothing for the null sender."""
        if not envelope.sender or not recipients:
            return succeed(None)
        if self.limit is not None and not self.limit.allow(envelope.sender):
            log.warn(
                "{kind} notice for {queue_id} to <{sender}> not sent: the sender's domain had its max_ndrs_per_sender_domain this hour",
                kind="non-delivery" if kind == "failed" else "delay", queue_id=envelope.queue_id, sender=envelope.sender,
            )
            return succeed(None)
        d = self.run_in_thread(read_headers, self.store.body_path(envelope.queue_id), envelope.size)
        d.addCallback(self._queue, kind, envelope, recipients, retry_until)
        return d

    def _queue(self, headers: bytes, kind: str, envelope: Envelope, recipients, retry_until) -> Deferred:
        now = self.clock.seconds()
        internal_id = self.ids.next()
        message_id = f"<{internal_id}.{kind}@{self.fqdn}>"
        data = build_dsn(kind, envelope, recipients, headers, self.fqdn, now, f"exgw-{internal_id}", retry_until, message_id)
        entry = self.store.create(str(internal_id))
        entry.write(data)
        notice = Envelope(
            queue_id=entry.queue_id, internal_id=internal_id, message_id=message_id, sender="",
            recipients=(Recipient(envelope.sender),), received_at=now, size=len(data), connector="DSN",
            extra={
                "reports_on": envelope.queue_id, "kind": kind,
                "subject": ("Undeliverable: " if kind == "failed" else "Delivery delayed: ") + envelope.extra.get("subject", ""),
            },
        )
        log.info(
            "{kind} notice {notice_id} for {queue_id} to <{sender}> about {count} recipients",
            kind="non-delivery" if kind == "failed" else "delay", notice_id=entry.queue_id, queue_id=envelope.queue_id,
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
