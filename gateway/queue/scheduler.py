"""
Delivery attempts for queued messages, and a fixed retry for the ones that
could not be delivered yet.

A message is attempted as soon as it is committed, then every
`retry_interval` while any recipient is pending; each attempt's outcome is
written to the envelope before the next, so state survives a restart. The
queue entry goes away only when every recipient is delivered or has failed
for good; one that failed for some recipient is moved to `failed/` with its
envelope, to wait for the non-delivery reports the outbound work brings.
(The full Exchange-like schedule and expiry come with that work too.)
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

from gateway.address import parse_mailbox
from gateway.envelope import Envelope, RecipientState
from gateway.errors import SMTPError
from gateway.queue.store import QueueStore, StoredBody

log = Logger(namespace="exgateway.queue")

# Bodies of just-queued messages kept in memory for their first attempt.
BODY_CACHE_BYTES = 16 * 1024 * 1024
NO_ROUTE = "550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain"


class DeliveryScheduler:
    def __init__(self, store: QueueStore, router, deliverers: dict, clock, retry_interval: float, max_concurrent: int) -> None:
        self.store = store
        self.router = router
        self.deliverers = deliverers
        self.clock = clock
        self.retry_interval = retry_interval
        self.max_concurrent = max_concurrent
        self._ready: deque[Envelope] = deque()
        self._active = 0
        self._timers: dict[str, object] = {}
        self._bodies: dict[str, bytes] = {}
        self._body_bytes = 0
        self._running = False

    def start(self, envelopes: list[Envelope]) -> None:
        self._running = True
        now = self.clock.seconds()
        for envelope in envelopes:
            if envelope.next_attempt > now:
                self._later(envelope, envelope.next_attempt - now)
            else:
                self._ready.append(envelope)
        self._pump()

    def stop(self) -> None:
        self._running = False
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._ready.clear()
        self._bodies.clear()
        self._body_bytes = 0

    def enqueue(self, envelope: Envelope, body: bytes | None = None) -> None:
        """
        Attempt a message soon; `body`, if given, spares the first attempt a
        read. Bodies are held only within a fixed budget, so a backlog (a
        slow next hop) falls back to reading from disk instead of growing
        memory.
        """
        if body is not None and self._body_bytes + len(body) <= BODY_CACHE_BYTES:
            self._bodies[envelope.queue_id] = body
            self._body_bytes += len(body)
        self._ready.append(envelope)
        self._pump()

    def _take_body(self, queue_id: str) -> bytes | None:
        body = self._bodies.pop(queue_id, None)
        if body is not None:
            self._body_bytes -= len(body)
        return body

    @property
    def idle(self) -> bool:
        return self._active == 0 and not self._ready

    def _later(self, envelope: Envelope, delay: float) -> None:
        def fire() -> None:
            self._timers.pop(envelope.queue_id, None)
            self.enqueue(envelope)

        self._timers[envelope.queue_id] = self.clock.callLater(delay, fire)

    def _pump(self) -> None:
        while self._running and self._ready and self._active < self.max_concurrent:
            envelope = self._ready.popleft()
            self._active += 1
            d = maybeDeferred(self._attempt, envelope)
            d.addErrback(lambda f, e=envelope: log.failure("delivery attempt for {queue_id} failed", f, queue_id=e.queue_id))
            d.addBoth(self._finished)

    def _finished(self, _) -> None:
        self._active -= 1
        self._pump()

    def _route(self, address: str) -> str | None:
        try:
            return self.router.route(parse_mailbox(address))
        except SMTPError:
            return None

    def _attempt(self, envelope: Envelope) -> Deferred:
        groups: dict[str, list[str]] = {}
        results: dict[str, tuple[RecipientState, str | None]] = {}
        for r in envelope.pending:
            hop = self._route(r.address)
            if self.deliverers.get(hop) is None:
                results[r.address] = (RecipientState.FAILED, NO_ROUTE)
            else:
                groups.setdefault(hop, []).append(r.address)
        body = StoredBody(self.store.body_path(envelope.queue_id), self._take_body(envelope.queue_id))
        ds = []
        for hop, addresses in groups.items():
            d = maybeDeferred(self.deliverers.get(hop).deliver, envelope, addresses, body)
            d.addCallback(results.update)
            d.addErrback(self._hop_failed, addresses, results)
            ds.append(d)
        return gatherResults(ds).addCallback(lambda _: self._record(envelope, results))

    def _hop_failed(self, failure, addresses, results) -> None:
        log.failure("delivery error", failure)
        for a in addresses:
            results[a] = (RecipientState.PENDING, f"451 4.3.0 {failure.getErrorMessage()}")

    def _record(self, envelope: Envelope, results) -> Deferred | None:
        now = self.clock.seconds()
        updated = envelope.with_results(results, now + self.retry_interval)
        for address, (state, reply) in results.items():
            log.info(
                "{event} {queue_id} to <{recipient}>: {reply}",
                event={"delivered": "delivered", "pending": "deferred", "failed": "failed"}[state.value],
                queue_id=envelope.queue_id,
                recipient=address,
                reply=reply,
                state=state.value,
            )
        if updated.done and any(r.state is RecipientState.FAILED for r in updated.recipients):
            # Until non-delivery reports exist, a message that failed for good
            # is kept (queue/failed/, with its envelope and every reply) rather
            # than forgotten: nothing the gateway said 250 to vanishes unseen.
            d = self.store.update(updated)
            d.addCallback(lambda _: self.store.set_failed(envelope.queue_id))
            return d
        if updated.done:
            self.store.remove(envelope.queue_id)
            return None
        d = self.store.update(updated)
        d.addCallback(lambda _: self._later(updated, self.retry_interval) if self._running else None)
        return d
