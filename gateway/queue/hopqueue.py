"""
Per-next-hop queues: each next hop's waiting messages, its own concurrency
and its own retry state.

Postfix's queue manager keeps a queue and a concurrency window per
destination, and a dead-destination cache; Exchange shows each next hop as
a queue with a Status (Ready, Retry), a LastError and a NextRetryTime. The
same here, so that one bad next hop cannot stop the others:

- A message waits in the queue of its next hop (the `queue list` name:
  "Mailbox Delivery", a send connector, an MX destination domain). A hop
  starts at most its window of attempts at once; the window starts at
  `initial` (Postfix's initial_destination_concurrency, 5), grows by one
  per attempt that reached the hop, up to `limit` (the send connector's
  max_connections, default 20, Postfix's default_destination_concurrency_limit),
  and falls back to `initial` when the hop fails. Waiting costs no
  delivery slot and no connection.
- An attempt that could not reach the hop at all (every recipient of it
  deferred with a 4.4.x network/routing status: refused, timed out,
  dropped) puts the hop in Retry until the next retry time, on the
  message retry schedule counted per hop. In Retry its messages wait,
  without connection attempts and without envelope rewrites; when the time
  comes, one message goes as the probe. A probe that reaches the hop makes
  it Ready again and the rest follow; one that does not sets the next
  retry time.

The state lives in memory: after a restart every hop starts Ready and the
first attempt finds out again, as Postfix's cache does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from gateway.logs.rolling import iso_time
from gateway.queue.retry import RetryPolicy

log = Logger(namespace="exgateway.queue")

# Postfix's initial_destination_concurrency and default_destination_concurrency_limit.
INITIAL_WINDOW = 5
DEFAULT_LIMIT = 20
# Idle Ready hops kept (their window with them) before they are forgotten.
KEEP_IDLE = 64


def hop_reached(replies: Iterable[str | None]) -> bool | None:
    """
    What the replies of one attempt to a hop say about the hop itself:
    False if it could not be reached (every reply a 4xx with a 4.4.x status,
    RFC 3463 network and routing: refused, timed out, dropped, no address,
    as the delivery client reports them); None if they tell nothing (a
    local 4.3.x trouble, such as a failed mailbox write); True otherwise (a
    reply from a hop that answers, even a 4xx about the message such as
    greylisting's 4.7.x).
    """
    codes = [r[4:8] if r and r[:1] == "4" else "" for r in replies]
    if codes and all(c == "4.4." for c in codes):
        return False
    if all(c in ("4.4.", "4.3.") for c in codes):
        return None
    return True


class NextHopQueue:
    """One next hop: its waiting message ids, attempts in flight, window and retry state."""

    def __init__(self, name: str, limit: int, initial: int) -> None:
        self.name = name
        self.limit = limit
        self.initial = min(initial, limit)
        self.window = self.initial
        self.waiting: deque[str] = deque()
        self.active = 0
        # In Retry until this time (None: Ready); consecutive failures, for the retry schedule.
        self.retry_at: float | None = None
        self.failures = 0
        self.last_error = ""

    def startable(self, now: float) -> bool:
        if not self.waiting:
            return False
        if self.retry_at is not None:
            # One probe at a time, once the retry time has come.
            return now >= self.retry_at and self.active == 0
        return self.active < self.window

    @property
    def status(self) -> str:
        return "Retry" if self.retry_at is not None else "Ready"


class HopQueues:
    """Every next hop's queue; picks the next message to attempt, round robin over the hops that may start one."""

    def __init__(
        self, clock, retry: RetryPolicy, limit_of: Callable[[str], int] = lambda name: DEFAULT_LIMIT,
        initial: int = INITIAL_WINDOW, wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.clock = clock
        self.retry = retry
        self.limit_of = limit_of
        self.initial = initial
        # Called when a hop's retry time comes (the scheduler pumps).
        self.wake = wake
        self.hops: dict[str, NextHopQueue] = {}
        self._turn: deque[str] = deque()
        self._timers: dict[str, IDelayedCall] = {}

    def hop(self, name: str) -> NextHopQueue:
        hop = self.hops.get(name)
        if hop is None:
            hop = self.hops[name] = NextHopQueue(name, self.limit_of(name), self.initial)
            self._turn.append(name)
        return hop

    def add(self, name: str, queue_id: str, limit: int | None = None) -> None:
        """Queue a message behind its next hop; `limit` (the hop's concurrency, as configured now) follows reloads."""
        hop = self.hop(name)
        if limit is not None and limit != hop.limit:
            hop.limit = limit
            hop.initial = min(self.initial, limit)
            hop.window = min(hop.window, limit)
        hop.waiting.append(queue_id)

    def in_retry(self, name: str) -> bool:
        hop = self.hops.get(name)
        return hop is not None and hop.retry_at is not None

    def waiting(self) -> set[str]:
        return {q for hop in self.hops.values() for q in hop.waiting}

    def has_startable(self, held: Collection[str] = ()) -> bool:
        """Whether some hop not `held` could start an attempt now."""
        now = self.clock.seconds()
        return any(hop.startable(now) for name, hop in self.hops.items() if name not in held)

    @property
    def empty(self) -> bool:
        return not any(hop.waiting for hop in self.hops.values())

    def next(self, valid: Callable[[str], bool] = lambda queue_id: True, held: Collection[str] = ()) -> tuple[str, str] | None:
        """
        (hop name, queue id) of the next attempt to start, counted as active;
        None if no hop may start one. Ids no longer `valid` (removed by an
        admin meanwhile) are dropped on the way; hops `held` (suspended by
        an admin) keep their messages.
        """
        now = self.clock.seconds()
        for _ in range(len(self._turn)):
            name = self._turn[0]
            self._turn.rotate(-1)
            hop = self.hops[name]
            if name in held:
                continue
            while hop.startable(now):
                queue_id = hop.waiting.popleft()
                if valid(queue_id):
                    hop.active += 1
                    return name, queue_id
        return None

    def release(self, name: str) -> None:
        """An attempt started by `next` has ended (its outcome, if any, was `observe`d first)."""
        hop = self.hops[name]
        hop.active -= 1
        now = self.clock.seconds()
        if hop.retry_at is not None and hop.retry_at <= now:
            # A probe that told nothing (the message was removed, the attempt broke): wait a round before the next.
            self._retry_later(hop, now + self.retry.transient_interval)
        self._forget_if_idle(hop)

    def _forget_if_idle(self, hop: NextHopQueue) -> None:
        """
        A Ready hop with nothing waiting or in flight is dropped once more
        than KEEP_IDLE hops are known (its window starts again next time, as
        Postfix forgets idle destinations): MX routing meets a new
        destination domain with each new domain, and the scheduler must not
        keep or scan every one it ever met.
        """
        if (not hop.waiting and hop.active == 0 and hop.retry_at is None and len(self.hops) > KEEP_IDLE
                and self.hops.get(hop.name) is hop):
            del self.hops[hop.name]
            self._turn.remove(hop.name)

    def observe(self, name: str, reached: bool | None, error: str = "") -> bool:
        """
        What an attempt to `name` showed (hop_reached): the hop answered,
        could not be reached, or nothing. True when this put the hop in Retry.
        """
        if reached is None:
            return False
        hop = self.hop(name)
        if reached:
            if hop.window < hop.limit:
                hop.window += 1
            if hop.retry_at is None and not hop.failures:
                return False  # Ready and answering: nearly every delivery
            if hop.retry_at is not None:
                log.info("next hop {next_hop} answers again; its queue is Ready", next_hop=name)
                self._cancel(name)
            hop.retry_at, hop.failures, hop.last_error = None, 0, ""
            return False
        now = self.clock.seconds()
        hop.last_error = error
        hop.window = hop.initial
        if hop.retry_at is not None and hop.retry_at > now:
            return False  # an attempt already in flight when the hop went into Retry
        hop.failures += 1
        when = self.retry.next_attempt(hop.failures, now)
        self._retry_later(hop, when)
        log.warn(
            "next hop {next_hop} unreachable: {error}; queue in Retry, next try {next_retry}",
            next_hop=name, error=error, next_retry=iso_time(when), waiting=len(hop.waiting),
        )
        return True

    def retry_now(self, name: str | None = None) -> None:
        """An admin's `queue retry`: the hop (every hop if None) leaves Retry and its messages go now."""
        for hop in [self.hops[name]] if name in self.hops else self.hops.values() if name is None else []:
            if hop.retry_at is not None:
                self._cancel(hop.name)
                hop.retry_at = self.clock.seconds()

    def _retry_later(self, hop: NextHopQueue, when: float) -> None:
        hop.retry_at = when
        self._cancel(hop.name)
        self._timers[hop.name] = self.clock.callLater(max(when - self.clock.seconds(), 0), self._due, hop.name)

    def _due(self, name: str) -> None:
        self._timers.pop(name, None)
        hop = self.hops.get(name)
        if hop is not None and not hop.waiting and hop.active == 0:
            # Nothing to probe with: forget the hop; the next message for it is its probe.
            hop.retry_at = None
            self._forget_if_idle(hop)
        self.wake()

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def drop(self, queue_id: str) -> None:
        """Take a message out of whichever queue it waits in (removed by an admin, expired while waiting)."""
        for hop in list(self.hops.values()):
            if queue_id in hop.waiting:
                hop.waiting.remove(queue_id)
                self._forget_if_idle(hop)

    def stop(self) -> None:
        for name in list(self._timers):
            self._cancel(name)
        for hop in self.hops.values():
            hop.waiting.clear()
