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

Memory is the second resource, as Exchange's PercentagePhysicalMemoryUsedLimit
(default 94): when more than `max_memory_percent` of physical memory is in
use by all processes (MemTotal - MemAvailable from /proc/meminfo) MAIL is
refused the same way, and taken again only once the available memory is
RESUME_FACTOR times the threshold's (94: refused above 94% used, taken
again at 91%). A node swapping to death takes mail no better than one with
a full disk, and the 452 sends a frontend to a hub that can.

Both are read every `interval` seconds from injected probes
(shutil.disk_usage and meminfo() in the gateway, functions of the test in
tests), not at each MAIL. Each resource keeps its own state and log lines;
MAIL is refused while either is under pressure.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger(namespace="exgateway.backpressure")

RESUME_FACTOR = 1.5
INTERVAL = 1.0
# Exchange's PercentagePhysicalMemoryUsedLimit default.
MAX_MEMORY_PERCENT = 94.0


def meminfo(path: str = "/proc/meminfo") -> tuple[int, int]:
    """(MemAvailable, MemTotal) in bytes: what the kernel says could be had without swapping, of all there is.

    Raises OSError where there is no /proc/meminfo or it lacks either line
    (the probe error is logged once and the memory state kept).
    """
    fields = {}
    with open(path, "rb") as f:
        for line in f:
            name, _, rest = line.partition(b":")
            fields[name.strip()] = rest.split()
    try:
        return int(fields[b"MemAvailable"][0]) * 1024, int(fields[b"MemTotal"][0]) * 1024
    except (KeyError, IndexError, ValueError):
        raise OSError(f"{path} has no MemAvailable and MemTotal") from None


def _mb(n: int) -> str:
    return f"{n // (1024 * 1024)} MB"


def _pct(x: float) -> str:
    return f"{x:.1f}%".replace(".0%", "%")


class BackPressure(Service):
    def __init__(
        self, free_bytes: Callable[[], int], clock, low: int, high: int | None = None, interval: float = INTERVAL, where: str = "",
        memory: Callable[[], tuple[int, int]] | None = None, max_memory_percent: float = MAX_MEMORY_PERCENT,
    ) -> None:
        self.free_bytes = free_bytes
        self.clock = clock
        self.low = low
        self.high = high if high is not None else int(low * RESUME_FACTOR)
        self.interval = interval
        # What is measured, for the log lines (the queue directory).
        self.where = where
        self.disk_refusing = False
        self.free: int | None = None
        # (available, total) bytes of physical memory, from `memory` (meminfo() in the gateway); None: not watched.
        self.memory = memory
        self.max_memory_percent = max_memory_percent
        self.memory_refusing = False
        self.available: int | None = None
        self.total: int | None = None
        self._loop: LoopingCall | None = None
        self._probe_error: str | None = None
        self._memory_error: str | None = None

    @property
    def refusing(self) -> bool:
        """MAIL is refused while either resource is under pressure."""
        return self.disk_refusing or self.memory_refusing

    def _used(self) -> float:
        total, available = self.total, self.available
        return 100.0 * (total - available) / total if total and available is not None else 0.0

    def _resume_percent(self) -> float:
        """Used share at or below which mail is taken again: RESUME_FACTOR times the available share at the limit."""
        return max(0.0, 100.0 - RESUME_FACTOR * (100.0 - self.max_memory_percent))

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
        """Read the free space (and memory) and change state where a threshold was crossed."""
        self._check_disk()
        if self.memory is not None:
            self._check_memory()

    def _check_memory(self) -> None:
        if self.memory is None:
            return
        try:
            available, total = self.memory()
        except OSError as e:
            if str(e) != self._memory_error:
                self._memory_error = str(e)
                log.error("back pressure: cannot read the memory in use: {error}", error=str(e), resource="memory")
            return
        self._memory_error = None
        self.available, self.total = available, total
        if total <= 0:
            return
        # Thresholds on the available bytes, so the hysteresis is the disk's: refuse below `low`, resume at 1.5 times it.
        low = total * (100.0 - self.max_memory_percent) / 100.0
        used = self._used()
        if not self.memory_refusing and available < low:
            self.memory_refusing = True
            log.warn(
                "back pressure: memory {used} used, above {limit}: new messages are refused (452 4.3.1) until at most {resume} is used",
                used=_pct(used), limit=_pct(self.max_memory_percent), resume=_pct(self._resume_percent()),
                resource="memory", available_bytes=available, total_bytes=total,
            )
        elif self.memory_refusing and available >= low * RESUME_FACTOR:
            self.memory_refusing = False
            log.warn(
                "back pressure over: memory {used} used, at most {resume}: messages are accepted again",
                used=_pct(used), resume=_pct(self._resume_percent()), resource="memory", available_bytes=available, total_bytes=total,
            )

    def _check_disk(self) -> None:
        try:
            free = self.free_bytes()
        except OSError as e:
            # Keep the last state; say so once per new error.
            if str(e) != self._probe_error:
                self._probe_error = str(e)
                log.error("back pressure: cannot read the free space of {where}: {error}", where=self.where, error=str(e), resource="disk")
            return
        self._probe_error = None
        self.free = free
        if not self.disk_refusing and free < self.low:
            self.disk_refusing = True
            log.warn(
                "back pressure: {free} free in {where}, below {low}: new messages are refused (452 4.3.1) until {high} are free",
                free=_mb(free), where=self.where, low=_mb(self.low), high=_mb(self.high), free_bytes=free, resource="disk",
            )
        elif self.disk_refusing and free >= self.high:
            self.disk_refusing = False
            log.warn(
                "back pressure over: {free} free in {where}, at least {high}: messages are accepted again",
                free=_mb(free), where=self.where, high=_mb(self.high), free_bytes=free, resource="disk",
            )

    def reason(self) -> str:
        """Why MAIL is refused, naming each resource under pressure, for the log (never the client)."""
        parts = []
        if self.disk_refusing:
            parts.append(f"{_mb(self.free or 0)} free in {self.where}, below {_mb(self.low)}")
        if self.memory_refusing:
            parts.append(f"memory {_pct(self._used())} used, above {_pct(self.max_memory_percent)}")
        return "back pressure: " + ", ".join(parts)

    def readiness(self) -> tuple[bool, str]:
        """The readiness check's answer: refusing mail is not ready."""
        if self.refusing:
            until = []
            if self.disk_refusing:
                until.append(f"{_mb(self.high)} are free")
            if self.memory_refusing:
                until.append(f"at most {_pct(self._resume_percent())} of memory is used")
            return False, self.reason() + "; refusing new messages until " + " and ".join(until)
        seen = []
        if self.free is not None:
            seen.append(f"{_mb(self.free)} free")
        if self.total:
            seen.append(f"memory {_pct(self._used())} used")
        return True, "accepting messages" + (f" ({', '.join(seen)})" if seen else "")

    def collect(self):
        """Prometheus collector: the state, and the free space last read."""
        from prometheus_client.core import GaugeMetricFamily

        state = GaugeMetricFamily("exgateway_back_pressure", "1 while new messages are refused for lack of free space or memory (452 4.3.1)")
        state.add_metric([], 1.0 if self.refusing else 0.0)
        yield state
        which = GaugeMetricFamily(
            "exgateway_back_pressure_resource", "1 while this resource is under pressure (new messages refused)", labels=["resource"]
        )
        which.add_metric(["disk"], 1.0 if self.disk_refusing else 0.0)
        if self.memory is not None:
            which.add_metric(["memory"], 1.0 if self.memory_refusing else 0.0)
        yield which
        if self.total:
            used = GaugeMetricFamily("exgateway_memory_used_percent", "Physical memory in use by all processes (MemTotal - MemAvailable), last read")
            used.add_metric([], self._used())
            yield used
        if self.free is not None:
            free = GaugeMetricFamily("exgateway_queue_free_bytes", "Free bytes in the queue directory's file system, last read")
            free.add_metric([], float(self.free))
            yield free
