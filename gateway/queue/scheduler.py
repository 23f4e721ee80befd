"""
Delivery attempts for queued messages, retries on Exchange's schedule,
expiry, and the notices the sender gets.

A message is attempted as soon as it is committed, then on the RetryPolicy
schedule while any recipient is pending. It waits for its attempt in the
queue of its next hop (gateway/queue/hopqueue.py): each hop has its own
concurrency and its own Retry state, so a next hop that is down or never
answers holds its own messages and no delivery slot of the others'; each attempt's outcome (and
whether a delay notice went out) is written to the envelope before the
next, so the state survives a restart. Recipients that fail for good, or
are still pending when the message expires, get the sender one
non-delivery report; a message pending past the delay-notice time gets one
delay notice. Notices are queued durably before the message's entry is
updated or removed. A message that failed and cannot be reported (null
sender: it is itself a notice) is kept in `failed/` for the admin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from gateway.deliver.registry import Deliverers
from gateway.envelope import Envelope, RecipientState
from gateway.nexthop import NextHop
from gateway.queue.entry import StoredBody
from gateway.queue.hopqueue import DEFAULT_LIMIT, HopQueues, hop_reached
from gateway.queue.notify import success_notices
from gateway.queue.retry import RetryPolicy, expiry_reply
from gateway.queue.store import QueueStore
from gateway.route.source import RouteSource

log = Logger(namespace="exgateway.queue")

# Bodies of just-queued messages kept in memory for their first attempt.
BODY_CACHE_BYTES = 16 * 1024 * 1024
NO_ROUTE = "550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain"


class DeliveryScheduler:
    def __init__(
        self, store: QueueStore, router, deliverers: Deliverers | Mapping[NextHop, Any], clock, retry: RetryPolicy, max_concurrent: int, notifier=None,
        max_per_hop: int = DEFAULT_LIMIT, tracking=None, metrics=None,
    ) -> None:
        self.store = store
        self.router = router
        self.deliverers = deliverers
        self.clock = clock
        self.retry = retry
        # Queues DSNs (Notifier); None: failures are only logged and kept in failed/.
        self.notifier = notifier
        # The message tracking log (DELIVER, SEND, DEFER, FAIL events), if one is kept.
        self.tracking = tracking
        # Metrics (delivery attempts and their duration), if exported.
        self.metrics = metrics
        # Attempts in flight, all next hops together; each hop also has its own limit
        # (max_per_hop, or a send connector's max_connections if lower) and waits in its own queue.
        self.max_concurrent = max_concurrent
        self.max_per_hop = max_per_hop
        self.hops = HopQueues(clock, retry, wake=self._pump)
        # The pending call of _pump_soon (a pump two reactor turns away), if any.
        self._soon: IDelayedCall | None = None
        self._active = 0
        self._timers: dict[str, IDelayedCall] = {}
        self._bodies: dict[str, bytes] = {}
        self._body_bytes = 0
        self._running = False
        # Every message held (waiting, ready or in delivery), for the queue commands.
        self.messages: dict[str, Envelope] = {}
        self.in_delivery: set[str] = set()
        # Queue names (see queue_of) that an admin suspended.
        self.suspended: set[str] = set()

    def start(self, envelopes: list[Envelope]) -> None:
        self._running = True
        now = self.clock.seconds()
        for envelope in envelopes:
            self.messages[envelope.queue_id] = envelope
            if envelope.next_attempt > now:
                self._later(envelope, envelope.next_attempt - now)
            else:
                self._wait(envelope)
        self._pump()

    def stop(self) -> None:
        self._running = False
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self.hops.stop()
        # `messages` is kept: an attempt still in flight at stop records its outcome on disk.
        self._bodies.clear()
        self._body_bytes = 0

    def enqueue(self, envelope: Envelope, body: bytes | None = None, just_acknowledged: bool = False) -> None:
        """
        Attempt a message soon; `body`, if given, spares the first attempt a
        read. Bodies are held only within a fixed budget, so a backlog (a
        slow next hop) falls back to reading from disk instead of growing
        memory. A message `just_acknowledged` (its 250 not written yet)
        waits for the reply to leave first: see _pump_soon.
        """
        if body is not None and self._body_bytes + len(body) <= BODY_CACHE_BYTES:
            self._bodies[envelope.queue_id] = body
            self._body_bytes += len(body)
        self.messages[envelope.queue_id] = envelope
        self._wait(envelope)
        if just_acknowledged:
            self._pump_soon()
        else:
            self._pump()

    def _wait(self, envelope: Envelope) -> None:
        """
        Queue the message behind its next hop: the first of its pending
        recipients' hops that is not in Retry (nearly always the one hop it
        has). Its attempt still delivers to all of them.
        """
        first = None
        for r in envelope.pending:
            hop = self._route(r.address, envelope)
            name = self._queue_name(hop, r.address)
            if first is None:
                first = (name, hop)
            if not self.hops.in_retry(name) and name not in self.suspended:
                self.hops.add(name, envelope.queue_id, self._limit(hop))
                return
        name, hop = first if first is not None else ("Unreachable", None)
        self.hops.add(name, envelope.queue_id, self._limit(hop))

    def _limit(self, hop: NextHop | None) -> int:
        """A hop's concurrency: max_per_hop, or lower where a send connector says (max_connections per destination)."""
        return min(self.max_per_hop, (hop.max_connections if hop is not None else None) or self.max_per_hop)

    def _pump_soon(self) -> None:
        """
        Pump two reactor turns from now, so the attempt's work (its next-hop
        commands, its log lines) comes after the 250 and after the client's
        next command. One pending call serves every message queued meanwhile.
        Two turns were measured (session 4) when the 250 still waited for the
        reactor's write pass; the server now sends it at once (fastpath.sendnow.send),
        and the two turns have not been measured again against one.
        """
        if self._soon is None:
            self._soon = self.clock.callLater(0, self._pump_next_turn)

    def _pump_next_turn(self) -> None:
        self._soon = self.clock.callLater(0, self._pump_now)

    def _pump_now(self) -> None:
        self._soon = None
        self._pump()

    def _take_body(self, queue_id: str) -> bytes | None:
        body = self._bodies.pop(queue_id, None)
        if body is not None:
            self._body_bytes -= len(body)
        return body

    @property
    def idle(self) -> bool:
        """No attempt in flight and none that could start (messages of a hop in Retry may wait)."""
        return self._active == 0 and not self.hops.has_startable(self.suspended)

    def _later(self, envelope: Envelope, delay: float) -> None:
        def fire() -> None:
            self._timers.pop(envelope.queue_id, None)
            self.enqueue(envelope)

        self._timers[envelope.queue_id] = self.clock.callLater(delay, fire)

    def _startable(self, queue_id: str) -> bool:
        # Not removed by an admin while it waited, and not already in an attempt.
        return queue_id in self.messages and queue_id not in self.in_delivery

    def _pump(self) -> None:
        while self._running and self._active < self.max_concurrent:
            picked = self.hops.next(self._startable, self.suspended)
            if picked is None:
                return
            hop, queue_id = picked
            envelope = self.messages[queue_id]
            self._active += 1
            self.in_delivery.add(queue_id)
            d = maybeDeferred(self._attempt, envelope)
            d.addErrback(self._attempt_failed, queue_id)
            d.addBoth(self._finished, queue_id, hop)

    def _attempt_failed(self, failure, queue_id: str) -> None:
        """
        An attempt whose outcome could not be written (ENOSPC on the
        envelope update, a notice that could not be queued): the message
        stays held and scheduled, with what is known in memory, so it is
        tried again (and `queue retry` finds it) instead of waiting for a
        restart. A full disk is an expected fault: one line, no traceback.
        """
        envelope = self.messages.get(queue_id)
        if failure.check(OSError):
            log.error(
                "could not record the delivery attempt of {queue_id}: {error}; trying again later",
                queue_id=queue_id, error=failure.value.strerror or failure.getErrorMessage(),
            )
        else:
            log.failure("delivery attempt for {queue_id} failed", failure, queue_id=queue_id)
        if envelope is None or not self._running or queue_id in self._timers:
            return
        now = self.clock.seconds()
        self._later(envelope, max(self.retry.next_attempt(envelope.attempts, now) - now, 1.0))

    def _finished(self, _, queue_id: str, hop: str) -> None:
        self._active -= 1
        self.in_delivery.discard(queue_id)
        self.hops.release(hop)
        self._pump()

    # --- queues, as the admin commands see them -------------------------

    def queue_of(self, address: str, envelope: Envelope | None = None) -> str:
        """The queue a pending recipient (of `envelope`) waits in: its next hop's name (stable across restarts)."""
        return self._queue_name(self._route(address, envelope), address)

    def _queue_name(self, hop: NextHop | None, address: str) -> str:
        if hop is None or self.deliverers.get(hop) is None:
            return "Unreachable"
        return hop.queue_name(address)

    def _suspended_recipients(self, envelope: Envelope) -> set[str]:
        if not self.suspended:
            return set()
        return {r.address for r in envelope.pending if self.queue_of(r.address, envelope) in self.suspended}

    def retry_now(self, queue: str | None = None) -> int:
        """Attempt now every waiting message with a recipient in `queue` (all if None); how many."""
        count = 0
        self._reschedule_stranded()
        # A hop in Retry goes now (Exchange's Retry-Queue); its waiting messages with it.
        self.hops.retry_now(queue)
        for name, hop in self.hops.hops.items():
            if queue is None or name == queue:
                count += sum(1 for q in hop.waiting if q in self.messages)
        for queue_id, timer in list(self._timers.items()):
            envelope = self.messages.get(queue_id)
            if envelope is None or (queue is not None and queue not in {self.queue_of(r.address, envelope) for r in envelope.pending}):
                continue
            timer.cancel()
            del self._timers[queue_id]
            self.enqueue(envelope)
            count += 1
        self._pump()
        return count

    def _reschedule_stranded(self) -> None:
        """
        A held message that is neither waiting, ready nor in delivery (an
        attempt ended in a way no path rescheduled) gets a timer, so the
        admin's retry reaches it: no message waits for a restart.
        """
        ready = self.hops.waiting()
        for queue_id, envelope in self.messages.items():
            if queue_id not in self._timers and queue_id not in ready and queue_id not in self.in_delivery:
                log.warn("{queue_id} was held without a next attempt; scheduled again", queue_id=queue_id)
                self._later(envelope, envelope.next_attempt - self.clock.seconds())

    def remove(self, queue_id: str, with_ndr: bool) -> Deferred:
        """An admin removes a message: its pending recipients fail (reported if asked), and it leaves the queue."""
        envelope = self.messages.pop(queue_id)
        self.hops.drop(queue_id)
        timer = self._timers.pop(queue_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        reply = "550 5.3.0 Message deleted by an administrator"
        results: dict[str, tuple[RecipientState, str | None]] = {r.address: (RecipientState.FAILED, reply) for r in envelope.pending}
        updated = envelope.with_results(results, 0.0)
        log.warn("removed {queue_id} by an administrator ({ndr})", queue_id=queue_id, ndr="with NDR" if with_ndr else "without NDR")
        self._track(updated, results, {})
        d = succeed(None)
        if with_ndr and self.notifier is not None and envelope.sender:
            failed = [r for r in updated.recipients if r.address in results]
            d.addCallback(lambda _: self.notifier.notify("failed", updated, failed))
        # Deleted, not reused: an attempt in flight may still be reading the body from the file.
        d.addCallback(lambda _: self.store.remove(queue_id, reuse=False))
        return d

    def _route(self, address: str, envelope: Envelope | None = None) -> NextHop | None:
        # The message's source (sender, receive connector, AUTH login, as queued) for sender-dependent routes.
        return self.router.route_address(address, RouteSource.of(envelope) if envelope is not None else None)

    def _attempt(self, envelope: Envelope) -> Deferred:
        groups: dict[NextHop, list[str]] = {}
        results: dict[str, tuple[RecipientState, str | None]] = {}
        held = self._suspended_recipients(envelope)
        for r in envelope.pending:
            if r.address in held:
                continue
            hop = self._route(r.address, envelope)
            if hop is None or self.deliverers.get(hop) is None:
                results[r.address] = (RecipientState.FAILED, NO_ROUTE)
            else:
                groups.setdefault(hop, []).append(r.address)
        body = StoredBody(self.store.body_file(envelope.queue_id), self._take_body(envelope.queue_id), envelope.size)
        ds = []
        for hop, addresses in groups.items():
            deliverer = self.deliverers.get(hop)
            assert deliverer is not None  # grouped above only where there is one
            d = maybeDeferred(deliverer.deliver, envelope, addresses, body)
            if self.metrics is not None:
                d.addBoth(self._timed, self._hop_name(hop), self.clock.seconds())
            d.addCallback(results.update)
            d.addErrback(self._hop_failed, addresses, results)
            ds.append(d)
        hops = {a: hop for hop, addresses in groups.items() for a in addresses}
        # One next hop (nearly always): its own Deferred, without gathering a list of one.
        done = ds[0] if len(ds) == 1 else gatherResults(ds)
        return done.addCallback(lambda _: self._record(envelope, results, hops))

    @staticmethod
    def _hop_name(hop: NextHop | None) -> str:
        return hop.name if hop is not None else "no route"

    def _timed(self, result, next_hop: str, started: float):
        self.metrics.delivery_time(next_hop).observe(self.clock.seconds() - started)
        return result

    def _notify(self, _: object, kind: str, envelope: Envelope, recipients) -> Deferred:
        return self.notifier.notify(kind, envelope, recipients)

    def _hop_failed(self, failure, addresses, results) -> None:
        log.failure("delivery error", failure)
        for a in addresses:
            results[a] = (RecipientState.PENDING, f"451 4.3.0 {failure.getErrorMessage()}")

    def _observe_hops(self, results, hops) -> None:
        """
        Tell each next hop's queue whether this attempt reached it
        (hopqueue.hop_reached). Per message, so the common case is short:
        any recipient delivered or failed for good means the hop answered,
        and its replies are not read.
        """
        deferred: dict[str, list] = {}
        answered: set[str] = set()
        for address, (state, reply) in results.items():
            hop = hops.get(address)
            if hop is None:
                continue
            name = self._queue_name(hop, address)
            if state is RecipientState.PENDING:
                deferred.setdefault(name, []).append(reply)
            else:
                answered.add(name)
        for name in answered:
            self.hops.observe(name, True)
        for name, replies in deferred.items():
            if name not in answered and self.hops.observe(name, hop_reached(replies), next((r for r in replies if r), "")):
                self._sweep(name)

    def _sweep(self, name: str) -> None:
        """
        A hop just went into Retry: its waiting messages are not attempted
        until it answers, so any due for expiry or a delay notice gets it
        here, once per retry of the hop, without a delivery attempt.
        """
        hop = self.hops.hops[name]
        now = self.clock.seconds()
        for queue_id in list(hop.waiting):
            envelope = self.messages.get(queue_id)
            if envelope is None:
                continue
            delayed = self.retry.delay_notice_due(envelope.received_at, now, envelope.delay_notified)
            if self.retry.expired(envelope.received_at, now) or delayed:
                hop.waiting.remove(queue_id)
                d = maybeDeferred(self._record, envelope, {}, {})
                d.addErrback(self._attempt_failed, queue_id)

    def _record(self, envelope: Envelope, results, hops=None) -> Deferred | None:
        now = self.clock.seconds()
        updated = envelope.with_results(results, 0.0)
        if hops:
            self._observe_hops(results, hops)
        self._track(updated, results, hops or {})
        for address, (state, reply) in results.items():
            if state is RecipientState.DELIVERED and self.tracking is not None:
                continue  # routine: the tracking log has it (DELIVER / SEND); deferrals and failures stay here too
            log.info(
                "{event} {queue_id} to <{recipient}>: {reply}",
                event={"delivered": "delivered", "pending": "deferred", "failed": "failed"}[state.value],
                queue_id=envelope.queue_id,
                recipient=address,
                reply=reply,
                state=state.value,
            )
        if updated.pending and self.retry.expired(updated.received_at, now):
            updated = self._expire(updated)
        failed_before = {r.address for r in envelope.recipients if r.state is RecipientState.FAILED}
        newly_failed = [r for r in updated.recipients if r.state is RecipientState.FAILED and r.address not in failed_before]
        notices = None
        # Notices go to the sender; the null sender (a notice itself) never gets one.
        tell = self.notifier is not None and bool(updated.sender)
        if newly_failed and tell:
            notices = succeed(None).addCallback(lambda _: self.notifier.notify("failed", updated, newly_failed))
        for kind, succeeded in (success_notices(updated, results) if tell else {}).items():
            # NOTIFY=SUCCESS: "delivered" (mailbox) or "relayed" (a next hop without DSN).
            notices = (notices or succeed(None)).addCallback(self._notify, kind, updated, succeeded)
        if updated.pending and self.retry.delay_notice_due(updated.received_at, now, updated.delay_notified):
            updated = replace(updated, delay_notified=True)
            if tell:
                pending, until = list(updated.pending), updated.received_at + self.retry.expiration
                notices = (notices or succeed(None)).addCallback(lambda _: self.notifier.notify("delayed", updated, pending, until))
        if notices is None:
            # Nothing to tell anyone (a delivery, nearly always): settle now, without a Deferred to chain on.
            return self._settle(updated, now)
        notices.addCallbacks(lambda _: updated, self._notice_failed, errbackArgs=(updated,))
        return notices.addCallback(self._settle, now)

    @staticmethod
    def _notice_failed(failure, envelope: Envelope):
        """
        A notice that could not be made must not strand the message it
        reports on. A disk fault (OSError) is retried like any unwritten
        outcome (_attempt_failed); anything else would fail again at every
        attempt, so the message settles without its notice and, when
        finished, is kept in queue/failed/ for the admin rather than removed
        unseen.
        """
        if failure.check(OSError):
            return failure
        log.failure("the notice about {queue_id} could not be made; the message is kept for the administrator", failure,
                    queue_id=envelope.queue_id)
        if not envelope.done:
            return envelope  # a delay notice: the message goes on being tried
        return replace(envelope, notice_failed=True)

    def _expire(self, envelope: Envelope) -> Envelope:
        log.info("expired {queue_id}: {count} recipients still pending", queue_id=envelope.queue_id, count=len(envelope.pending))
        recipients = tuple(
            replace(r, state=RecipientState.FAILED, last_reply=expiry_reply(r.last_reply)) if r.state is RecipientState.PENDING else r
            for r in envelope.recipients
        )
        if self.tracking is not None:
            expired = [r for r in recipients if r.last_reply and r.last_reply.startswith("550 4.4.7")]
            self.tracking.event("FAIL", "ROUTING", envelope, [r.address for r in expired], [r.last_reply for r in expired])
        return replace(envelope, recipients=recipients)

    def _track(self, envelope: Envelope, results, hops) -> None:
        """One tracking event per outcome and next hop: DELIVER / SEND / DEFER / FAIL (and the metrics' counts)."""
        if self.metrics is not None:
            for address, (state, _) in results.items():
                self.metrics.delivery(self._hop_name(hops.get(address)), state.value).inc()
        if self.tracking is None:
            return
        events: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for address, (state, reply) in results.items():
            hop = hops.get(address)
            to_mailbox = hop is not None and hop.is_mailbox
            connector = "Mailbox delivery" if to_mailbox else (hop.name if hop is not None else "") or "no route"
            if state is RecipientState.DELIVERED:
                event, source = ("DELIVER", "STOREDRIVER") if to_mailbox else ("SEND", "SMTP")
            elif state is RecipientState.PENDING:
                event, source = "DEFER", "SMTP"
            else:
                event, source = "FAIL", "SMTP"
            events.setdefault((event, source, connector), []).append((address, reply or ""))
        for (event, source, connector), items in events.items():
            self.tracking.event(event, source, envelope, [a for a, _ in items], [r for _, r in items], connector_id=connector)

    def _settle(self, updated: Envelope, now: float) -> Deferred | None:
        """Write the outcome: remove a finished message, keep an unreportable failure, schedule the rest."""
        if updated.queue_id not in self.messages:
            return None  # removed by an admin during this attempt
        if updated.done:
            self.messages.pop(updated.queue_id, None)
            failed = any(r.state is RecipientState.FAILED for r in updated.recipients)
            if failed and (self.notifier is None or not updated.sender or updated.notice_failed):
                # Nobody to tell (a notice that bounced, or no notifier): kept for
                # the admin in queue/failed/ with every reply, never dropped unseen.
                d = self.store.update(updated)
                d.addCallback(lambda _: self.store.set_failed(updated.queue_id))
                return d
            self.store.remove(updated.queue_id)
            return None
        updated = replace(updated, next_attempt=self.retry.next_attempt(updated.attempts, now))
        self.messages[updated.queue_id] = updated
        d = self.store.update(updated)
        d.addCallback(lambda _: self._later(updated, updated.next_attempt - now) if self._running else None)
        return d
