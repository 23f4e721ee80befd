"""
The threads password hashes are verified in: few, and nobody else's.

An argon2id verification takes 64 MiB and ~0.1 s of CPU. Before this pool
they ran in the reactor's shared thread pool (up to 10 threads), the one the
queue store writes and fsyncs through: ten devices logging in at once took
640 MiB and every thread, and anonymous sessions on port 25 waited for
their queue writes behind the AUTHs. Here at most `threads` verifications
run at once (their memory is bounded by it); the rest wait in the pool's
queue, and the reactor thread and the shared pool never run one.
"""

from __future__ import annotations

import os
import threading

from twisted.application.service import Service
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

NAME = "exgateway-verify"


def default_threads() -> int:
    """One per core, at least 2 (a slow LDAP-less verification never blocks every login), at most 4 (256 MiB)."""
    return max(2, min(4, os.cpu_count() or 2))


class VerifyPool(Service):
    """A started, bounded ThreadPool for password verification; stopped (joined) with the service."""

    def __init__(self, reactor, threads: int | None = None) -> None:
        self.reactor = reactor
        self.threads = threads or default_threads()
        self.pool = ThreadPool(minthreads=0, maxthreads=self.threads, name=NAME)

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        # Verifications under way finish (a fraction of a second each); queued ones are dropped with their sessions.
        self.pool.stop()

    def run(self, f, *args):
        """f(*args) in one of the pool's threads; a Deferred fired in the reactor thread."""
        return deferToThreadPool(self.reactor, self.pool, f, *args)

    @staticmethod
    def in_pool() -> bool:
        """Whether the calling thread is one of a VerifyPool's (what the hasher asserts in tests)."""
        return threading.current_thread().name.startswith(f"PoolThread-{NAME}-")
