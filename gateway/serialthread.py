"""
One thread of our own that runs blocking calls in the order given.

The queue store's file work runs in one: commits (each message's 250 waits
for a round trip to the thread and back), spare files, envelope updates and
removals. Through Twisted's reactor thread pool a round trip passes a
coordinator lock on both sides, a copy of the logging context and a
`queue.Queue` built on a Condition, and the pool's threads take turns, each
one more contender for the GIL; here it is one `SimpleQueue.put`, the call,
and `callFromThread`. Measured side by side (bench/ab.py, 5 KB): commits
here instead of the pool, 0.90x server CPU per message and 1.10x the rate
with one session; the store's other work here too, rather than in the pool
or a second thread of its own, a further 0.95x CPU (one session) and 0.91x
(20 sessions).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

_STOP = object()
log = Logger(namespace="exgateway.thread")


class SerialThread(Service):
    """
    Runs `call`s (and `post`s) one after the other in one thread; each
    call's result (or Failure) comes back in the reactor thread. A service:
    the thread starts with it and, at stop, finishes what it was given
    before it ends.
    """

    def __init__(self, reactor, name: str) -> None:
        self.reactor = reactor
        self.thread_name = name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ended: Deferred | None = None
        self._stopped = False

    def call(self, f: Callable, *args) -> Deferred:
        """
        Run f(*args) in the thread, after the calls given before it. Once
        the service has stopped (a delivery finishing during shutdown
        removes its file), the call runs here and now instead.
        """
        if self._stopped:
            return maybeDeferred(f, *args)
        d: Deferred = Deferred()
        self._calls.put((f, args, d))
        return d

    def post(self, f: Callable, *args) -> None:
        """
        Run f(*args) in the thread, after the calls given before it, with
        nothing sent back on success: no wake-up of the reactor thread for
        work nobody waits on (a message's removal after its delivery). A
        failure is still logged, from the reactor thread.
        """
        if self._stopped:
            try:
                f(*args)
            except Exception:
                self._failed(f, Failure())
            return
        self._calls.put((f, args, None))

    def startService(self) -> None:
        super().startService()
        self._stopped = False
        ended: Deferred = Deferred()
        self._ended = ended
        # A daemon: a call stuck in the kernel (a hung disk) must not keep the process alive after the reactor stops.
        self._thread = threading.Thread(target=self._run, args=(ended,), name=self.thread_name, daemon=True)
        self._thread.start()

    def stopService(self) -> Deferred | None:
        super().stopService()
        if self._thread is None:
            return None
        self._thread = None
        self._stopped = True
        self._calls.put(_STOP)
        return self._ended

    def _run(self, ended: Deferred) -> None:
        call_back = self.reactor.callFromThread
        while True:
            item = self._calls.get()
            if item is _STOP:
                break
            f, args, d = item
            try:
                result = f(*args)
            except BaseException:
                if d is None:
                    call_back(self._failed, f, Failure())
                else:
                    call_back(d.errback, Failure())
            else:
                if d is not None:
                    call_back(d.callback, result)
        call_back(ended.callback, None)

    @staticmethod
    def _failed(f: Callable, failure: Failure) -> None:
        log.failure("{call} failed", failure, call=getattr(f, "__qualname__", f))
