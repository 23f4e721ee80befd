"""
A graceful stop (SIGTERM, Ctrl-C, `systemctl stop`): intake closes, messages
in flight finish.

The listeners stop accepting. A session waiting for its next command is told
`421 4.3.2 Service not available, closing transmission channel` and closed.
A session in the middle of a message (DATA, or BDAT up to its LAST chunk:
a frontend streams a large body in chunks, or waiting for the queue's
fsync before its 250) goes on: its client sends the rest, gets its
250, and its next command gets the 421 (a client that says nothing more is
closed after LINGER). Whatever is still open when `shutdown_grace` runs out
gets the 421 and is closed: its message never got a 250, so its client still
has it and retries. Only then do the queue, the logs and the rest stop
(gateway/nodeservices.py, GatewayService), so every 250 sent is a message on disk.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gateway.interfaces import ISessionObserver

log = Logger(namespace="exgateway.smtpd")

# After a message finishes during a stop, how long its client has to send its
# next command (which gets the 421) before the session is closed anyway.
LINGER = 2.0
# After the grace period, how long closing connections may take to flush their 421.
CLOSE_TIMEOUT = 2.0


@implementer(ISessionObserver)
class Sessions:
    """The open SMTP sessions of this process, so a stop can let them finish."""

    def __init__(self) -> None:
        self.open: set = set()
        self.stopping = False
        self._emptied: list[Deferred] = []

    def add(self, session) -> None:
        self.open.add(session)

    def discard(self, session) -> None:
        self.open.discard(session)
        if not self.open:
            waiting, self._emptied = self._emptied, []
            for d in waiting:
                d.callback(None)

    def _empty(self) -> Deferred:
        if not self.open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._emptied.append(d)
        return d

    def stop(self, clock, grace: float) -> Deferred:
        """Tell every session the process stops; fires when all have closed, at most `grace` (+ CLOSE_TIMEOUT) later."""
        self.stopping = True
        busy = 0
        for session in list(self.open):
            if not session.stop_gently():
                busy += 1
        if not self.open:
            return succeed(None)
        log.info("stopping: {busy} message(s) in progress may finish within {grace:g} s", busy=busy, grace=grace)
        done = self._empty()
        expire = clock.callLater(grace, self._expire, clock)

        def finished(result):
            if expire.active():
                expire.cancel()
            return result

        return done.addBoth(finished)

    def _expire(self, clock) -> None:
        left = list(self.open)
        log.warn("stopping: shutdown_grace over, closing {count} session(s) still open (their clients retry)", count=len(left))
        for session in left:
            session.stop_now()
        # A client that reads nothing must not hold the stop: its connection is cut.
        clock.callLater(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        for session in list(self.open):
            session.transport.abortConnection()


def close_intake(listeners, sessions: Sessions, clock, grace: float) -> Deferred:
    """Stop accepting on every listener, then let the open sessions finish (Sessions.stop)."""
    stopped = DeferredList([maybeDeferred(listener.stop_accepting) for listener in listeners])
    return stopped.addCallback(lambda _: sessions.stop(clock, grace))


__all__ = ["LINGER", "Sessions", "close_intake"]
