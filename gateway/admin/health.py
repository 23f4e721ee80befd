"""
Health that means something, and drain.

`/health/live` says the process serves. `/health/ready` is 200 only when this
node can take mail right now: its queue directory takes a synced write and
has free space above the threshold (hub), at least one hub answers SMTP
(frontend), and the node is not draining; otherwise 503 with a JSON body
naming each failing check. A load balancer's `option httpchk GET
/health/ready` then stops sending clients to a node whose relay is broken,
which a TCP or SMTP banner check would miss.

Drain (`exgateway drain`, like Set-ServerComponentState HubTransport
-State Draining): new connections get `421 4.3.2 Service not active`,
sessions in progress finish, the queue keeps delivering, ready turns 503.
The state is a file, so a restart stays drained until `exgateway undrain`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from gateway.files import remove_file, write_private_atomically

log = Logger(namespace="exgateway.health")

# The longest a readiness probe waits for a hub (each reply, and the answer as a whole):
# a balancer's check (HAProxy's default timeout check, a few seconds) must get an answer.
HUB_PROBE_TIMEOUT = 2.5


class NodeState:
    """Whether this node drains; kept in a file so it survives a restart."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag
        self._flag = os.fspath(flag)

    @property
    def draining(self) -> bool:
        # Asked at every new connection: os.path, not pathlib's slower wrapper.
        return os.path.exists(self._flag)

    def drain(self) -> None:
        write_private_atomically(self.flag, b"draining\n")
        log.warn("node draining: new connections get 421 4.3.2 Service not active; the queue keeps delivering")

    def undrain(self) -> None:
        remove_file(self.flag)
        log.warn("node back in service")


def evaluate(checks: dict[str, tuple[bool, str]]) -> tuple[int, dict]:
    """The readiness answer for a set of named checks: 200 if all pass, else 503 naming the failures."""
    failing = {name: detail for name, (ok, detail) in checks.items() if not ok}
    body: dict[str, object] = {
        "status": "ready" if not failing else "not ready",
        "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in sorted(checks.items())},
    }
    if failing:
        body["failing"] = sorted(failing)
    return (200 if not failing else 503), body


def queue_check(directory: Path, min_free: int) -> tuple[bool, str]:
    """A file written, fsynced and removed in the queue directory, and enough free space."""
    probe = directory / ".ready-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as e:
        return False, f"{directory} is not writable: {e.strerror}"
    free = shutil.disk_usage(directory).free
    if free < min_free:
        return False, f"{free // (1024 * 1024)} MB free in {directory}, below {min_free // (1024 * 1024)} MB"
    return True, f"{free // (1024 * 1024)} MB free"


class Readiness:
    def __init__(
        self, state: NodeState, queue_dir: Path | None, min_free: int, hub_pool, run_in_thread, clock, cache: float = 2.0,
        probe_timeout: float = HUB_PROBE_TIMEOUT, pressure=None,
    ) -> None:
        self.state = state
        self.queue_dir = queue_dir
        self.min_free = min_free
        self.hub_pool = hub_pool
        self.run_in_thread = run_in_thread
        self.clock = clock
        self.cache = cache
        self.probe_timeout = probe_timeout
        self._hub: tuple[float, tuple[bool, str]] | None = None
        # BackPressure of the hub's intake, if any: ready says what SMTP does (452 4.3.1 at MAIL).
        self.pressure = pressure
        # The probe in flight, shared by every check that comes meanwhile.
        self._probe: Deferred | None = None
        # The queue check writes and fsyncs a file: anyone who can reach the
        # health port could make the disk sync at will. Its answer is kept for
        # QUEUE_CACHE seconds, and requests while one runs wait for that one.
        self._queue: tuple[float, tuple[bool, str]] | None = None
        self._queue_waiters: list[Deferred] | None = None

    QUEUE_CACHE = 1.0

    def _queue_check(self) -> Deferred:
        now = self.clock.seconds()
        if self._queue is not None and now - self._queue[0] < self.QUEUE_CACHE:
            return succeed(self._queue[1])
        waiter: Deferred = Deferred()
        if self._queue_waiters is not None:
            self._queue_waiters.append(waiter)
            return waiter
        self._queue_waiters = [waiter]
        # May fire at once (a synchronous runner): the waiter is listed first.
        self.run_in_thread(queue_check, self.queue_dir, self.min_free).addBoth(self._queue_checked)
        return waiter

    def _queue_checked(self, result) -> None:
        waiters, self._queue_waiters = self._queue_waiters or [], None
        if isinstance(result, Failure):
            for waiter in waiters:
                waiter.errback(result)
            return
        # Stamped when it finished: a slow disk's answer is kept as long as a fast one's.
        self._queue = (self.clock.seconds(), result)
        for waiter in waiters:
            waiter.callback(result)

    def _hub_check(self) -> Deferred:
        """
        Whether a hub answers EHLO, answered within probe_timeout whatever
        the hubs do (one frozen by SIGSTOP accepts TCP and never greets):
        a probe still running then counts as a failure, cached like any
        answer, and its late result is kept for the next check. One probe
        at a time; checks that come meanwhile wait for it.
        """
        now = self.clock.seconds()
        if self._hub is not None and now - self._hub[0] < self.cache:
            return succeed(self._hub[1])
        probe = self._probe or self._start_probe()
        if probe.called:
            return probe  # answered at once (a kept-open failure, a test's fake)
        self._probe = probe
        answer: Deferred = Deferred()

        def late() -> None:
            result = (False, f"no hub answered within {self.probe_timeout:g} s")
            self._hub = (self.clock.seconds(), result)
            answer.callback(result)

        timer = self.clock.callLater(self.probe_timeout, late)

        def probed(result):
            if timer.active():
                timer.cancel()
                answer.callback(result)
            return result

        probe.addCallback(probed)
        return answer

    def _start_probe(self) -> Deferred:
        def ok(acquired):
            client, _ = acquired
            self.hub_pool.release(client)
            return True, "a hub answered EHLO"

        def failed(failure):
            return False, f"no hub answers: {failure.getErrorMessage()}"

        def done(result):
            self._probe = None
            self._hub = (self.clock.seconds(), result)
            return result

        return self.hub_pool.acquire(reuse=False).addCallbacks(ok, failed).addCallback(done)

    @inlineCallbacks
    def check(self):
        checks = {"not_draining": (not self.state.draining, "draining" if self.state.draining else "in service")}
        if self.pressure is not None:
            checks["back_pressure"] = self.pressure.readiness()
        pending, names = [], []
        if self.queue_dir is not None:
            names.append("queue")
            pending.append(self._queue_check())
        if self.hub_pool is not None:
            names.append("hub_reachable")
            pending.append(self._hub_check())
        results = yield gatherResults(pending)
        checks.update(zip(names, results, strict=True))
        return evaluate(checks)


class _Live(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return b'{"status": "live"}\n'


class _Ready(resource.Resource):
    isLeaf = True

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request):
        def answer(result):
            code, body = result
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(body, indent=1).encode() + b"\n")
            request.finish()

        def broke(failure):
            log.failure("readiness check failed", failure)
            request.setResponseCode(503)
            request.write(b'{"status": "not ready", "failing": ["internal error"]}\n')
            request.finish()

        self.readiness.check().addCallbacks(answer, broke)
        return server.NOT_DONE_YET


def health_site(readiness: Readiness, metrics: resource.IResource | None = None) -> server.Site:
    root = resource.Resource()
    health = resource.Resource()
    root.putChild(b"health", health)
    health.putChild(b"live", _Live())
    health.putChild(b"ready", _Ready(readiness))
    if metrics is not None:
        root.putChild(b"metrics", metrics)
    site = server.Site(root)
    site.noisy = False
    # No access-log line per probe or scrape: a balancer checking every 2 s would bury everything else.
    site.log = lambda request: None  # type: ignore[method-assign]
    return site
