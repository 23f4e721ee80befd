"""
The small Services a gateway process is made of that belong to no stage of
their own: the queue's start and stop, the directories and pid file made at
start, the certificate check, the hub pool's close, and the process's top
service that orders a stop. gateway/service.py builds and orders them; each
takes what it needs in its constructor.

Nothing here binds or writes when it is made: directories, files and the
certificate store are touched in startService, after twistd has bound the
privileged ports and dropped privileges.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredList, maybeDeferred

from gateway.config import Config
from gateway.deliver.pool import ConnectionPool
from gateway.deliver.registry import Deliverers
from gateway.files import PRIVATE_DIRECTORY, make_directory
from gateway.queue.scheduler import DeliveryScheduler
from gateway.queue.store import QueueStore
from gateway.smtpd.shutdown import Sessions, close_intake
from gateway.startup import install_observer
from gateway.tls.check import certificate_problems
from gateway.tls.provider import TLSProvider
from gateway.tls.store import CertificateError
from gateway.workers import Listener, WorkerSupervisor


def make_directories(*paths: Path, mode: int = PRIVATE_DIRECTORY) -> None:
    """Create what the gateway writes to (0700 whatever the umask); a failure stops start-up with one clear line, not a traceback."""
    for path in paths:
        try:
            make_directory(path, mode)
        except OSError as e:
            raise SystemExit(f"exgateway: cannot create {path}: {e.strerror} (check server.var_dir and the paths under it)") from None


class QueueService(Service):
    """The hub's queue: recover on start (worker 0 first takes in the queues of workers no longer run), then deliver."""

    def __init__(
        self, store: QueueStore, scheduler: DeliveryScheduler, deliverers: Deliverers, extra_dirs: tuple[Path, ...],
        orphans: Callable[[], list[Path]],
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.deliverers = deliverers
        self.extra_dirs = extra_dirs
        self.orphans = orphans

    def startService(self) -> None:
        make_directories(self.store.directory, *self.extra_dirs)
        for directory in self.orphans():
            self.store.adopt(directory)
        envelopes = self.store.recover()
        self.scheduler.start(envelopes)
        super().startService()

    def stopService(self):
        self.scheduler.stop()
        self.deliverers.close()
        self.store.stop()
        return super().stopService()


class DirectoryService(Service):
    def __init__(self, *dirs: Path) -> None:
        self.dirs = dirs

    def startService(self) -> None:
        make_directories(*self.dirs)
        super().startService()


class PrivateDirectoryService(Service):
    """
    A directory only the gateway's user may enter (where the admin sockets
    live). Made after twistd drops privileges, as the admin sockets are: they
    belong to the service user, whose other workers make theirs there too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def startService(self) -> None:
        # Before the admin socket binds (the next service).
        make_directories(self.path)
        self.path.chmod(0o700)
        super().startService()


class PidFileService(Service):
    """
    Worker 0's process id in var_dir (`var/run/exgateway.pid`), where the
    config file leads: `kill -TERM $(cat var/run/exgateway.pid)` from any
    directory, unlike twistd's own ./twistd.pid.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def startService(self) -> None:
        self.path.write_text(f"{os.getpid()}\n")
        super().startService()

    def stopService(self):
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return super().stopService()


class HubPoolService(Service):
    """The frontend's kept connections to the hubs, closed at stop."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def stopService(self):
        self.pool.close()
        return super().stopService()


class CertificateService(Service):
    """
    Reads the certificate store at start; with none in it, makes the
    self-signed one for the FQDN. A TLS connector whose certificate cannot
    be found stops start-up with its name and the reason, rather than
    failing every STARTTLS later.
    """

    def __init__(self, tls: TLSProvider, config: Config) -> None:
        self.tls = tls
        self.config = config

    def startService(self) -> None:
        store = self.tls.store
        make_directories(store.directory)
        try:
            store.ensure_default(self.config.fqdn, self.tls.now())
        except OSError as e:
            raise SystemExit(f"exgateway: cannot write the certificate store {store.directory}: {e.strerror}") from None
        self.tls.reload()
        # The check config check and reload make (gateway/tls/check.py), with every problem named.
        problems = certificate_problems(self.config, store)
        if problems:
            raise SystemExit("exgateway: the certificate store cannot serve this configuration:\n" + "\n".join(f"  {p}" for p in problems))
        for c in self.config.connectors("frontend"):
            if c.enabled and c.uses_tls:
                try:
                    self.tls.options_for(c)
                except CertificateError as e:
                    raise SystemExit(f"exgateway: receive connector '{c.identity}' cannot serve TLS: {e}") from None
        super().startService()


class GatewayService(MultiService):
    """
    The whole process. A stop closes intake first and waits for the messages
    in flight (gateway/smtpd/shutdown.py), and passes the stop on to the other
    workers at once; only then do its services stop (the queue after the
    last 250, the logs flushed last).

    `listeners`: every SMTP listener of the process; `sessions`: the registry
    their sessions join; `supervisor`: worker 0's WorkerSupervisor when the
    node runs several workers, else None; `log_observer`: the filtered log
    observer (gateway/startup.py) handed to the application twistd makes,
    or None (tests: nothing is installed).
    """

    def __init__(
        self, reactor: Any, grace: float, sessions: Sessions, listeners: list[Listener], supervisor: WorkerSupervisor | None,
        log_observer: Any,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.grace = grace
        self.sessions = sessions
        self.listeners = listeners
        self.supervisor = supervisor
        self.log_observer = log_observer

    def setServiceParent(self, parent):
        install_observer(parent, self.log_observer)
        return super().setServiceParent(parent)

    def stopService(self):
        first = [close_intake(self.listeners, self.sessions, self.reactor, self.grace)]
        if self.supervisor is not None:
            first.append(maybeDeferred(self.supervisor.stopService))
        d = DeferredList(first)
        d.addCallback(lambda _: MultiService.stopService(self))
        return d
