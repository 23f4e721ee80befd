"""
Back pressure: stop taking mail before the queue's disk is full.

Exchange's transport watches the free space of its queue database and, at
its high pressure level, refuses new messages with `452 4.3.1 Insufficient
system resources` until the pressure falls, with hysteresis so that the
state does not flap at the edge. The same here for the hub's queue
directory: below `low` free bytes (`[health] min_free_space`, the
threshold readiness already reported) MAIL is refused with that reply;
mail is taken again only above `high` (RESUME_FACTOR times `low`). Refusing
at MAIL, not after the body, costs a client nothing to retry later, and a
frontend takes the 452 as "this hub is busy" and hands the message to
another hub. One log line per change of state; the state is a metric and
a readiness check.

The free space is read every `interval` seconds from an injected probe
(shutil.disk_usage in the gateway, a function of the test in tests), not
at each MAIL.
"""

from __future__ import annotations

from typing import Callable

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger(namespace="exgateway.backpressure")

RESUME_FACTOR = 1.5
INTERVAL = 1.0


def _mb(n: int) -> str:
    return f"{n // (1024 * 1024)} MB"


class BackPressure(Service):
    def __init__(self, free_bytes: Callable[[], int], clock, low: int, high: int | None = None, interval: float = INTERVAL, where: str = "") -> None:
        self.free_bytes = free_bytes
        self.clock = clock
        self.low = low
        self.high = high if high is not None else int(low * RESUME_FACTOR)
        self.interval = interval
        # What is measured, for the log lines (the queue directory).
        self.where = where
        self.refusing = False
        self.free: int | None = None
        self._loop: LoopingCall | None = None
        self._probe_error: str | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stopService(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return super().stopService()

    def check(self) -> None:
        """Read the free space and change state if it crossed a threshold."""
        try:
            free = self.free_bytes()
        except OSError as e:
            # Keep the last state; say so once per new error.
            if str(e) != self._probe_error:
                self._probe_error = str(e)
                log.error("back pressure: cannot read the free space of {where}: {error}", where=self.where, error=str(e))
            return
        self._probe_error = None
        self.free = free
        if not self.refusing and free < self.low:
            self.refusing = True
            log.warn(
                "back pressure: {free} free in {where}, below {low}: new messages are refused (452 4.3.1) until {high} are free",
                free=_mb(free), where=self.where, low=_mb(self.low), high=_mb(self.high), free_bytes=free,
            )
        elif self.refusing and free >= self.high:
            self.refusing = False
            log.warn(
                "back pressure over: {free} free in {where}, at least {high}: messages are accepted again",
                free=_mb(free), where=self.where, high=_mb(self.high), free_bytes=free,
            )

    def reason(self) -> str:
        """Why MAIL is refused, for the log (never the client)."""
        return f"back pressure: {_mb(self.free or 0)} free in {self.where}, below {_mb(self.low)}"

    def readiness(self) -> tuple[bool, str]:
        """The readiness check's answer: refusing mail is not ready."""
        if self.refusing:
            return False, self.reason() + f"; refusing new messages until {_mb(self.high)} are free"
        return True, "accepting messages" + (f" ({_mb(self.free)} free)" if self.free is not None else "")

    def collect(self):
        """Prometheus collector: the state, and the free space last read."""
        from prometheus_client.core import GaugeMetricFamily

        state = GaugeMetricFamily("exgateway_back_pressure", "1 while new messages are refused for lack of free space (452 4.3.1)")
        state.add_metric([], 1.0 if self.refusing else 0.0)
        yield state
        if self.free is not None:
            free = GaugeMetricFamily("exgateway_queue_free_bytes", "Free bytes in the queue directory's file system, last read")
            free.add_metric([], float(self.free))
            yield free
