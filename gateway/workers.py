"""
Several processes for one node: `[server] workers`.

One twistd process runs on one core: its reactor thread does every
session's parsing, the queue's bookkeeping and the delivery. A node with
`workers = N` runs N processes. The one twistd started (worker 0) opens every
SMTP listening socket (as root, before privileges drop) and starts the
others as its children, which inherit those sockets: all workers accept
from the same queue of connections, and a worker busy with its own takes
fewer of them. Each worker is a whole node of its role, with a hub queue of
its own (`<queue>/worker-N`: it delivers what it accepted, and never
recovers another's files), its own admin socket and its own log files in the
shared log directories. Worker 0 alone serves health and metrics, restarts
a worker that exits, and passes a reload (SIGHUP) on; a worker whose
parent is gone stops.

What is not shared: connection limits, message rate limits and AUTH
lockouts are counted per worker (see etc/exgateway.toml).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import InvalidLogLevelError, Logger, LogLevel

log = Logger(namespace="exgateway.workers")

# How worker 0 tells the others which inherited descriptor serves which binding.
LISTEN_FDS = "EXGATEWAY_LISTEN_FDS"
# Twisted's default listen backlog (50) drops SYNs when a hundred devices
# connect at once, and each dropped SYN costs its client a second or more.
LISTEN_BACKLOG = 1024
# A worker that keeps dying is restarted at most this often.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0
STOP_TIMEOUT = 30.0


def queue_directory(base: Path, worker: int) -> Path:
    """Worker 0 keeps the configured queue directory; worker N a `worker-N` folder inside it."""
    return base if worker == 0 else base / f"worker-{worker}"


def admin_socket(path: Path, worker: int) -> Path:
    """`admin.sock` for worker 0, `admin-worker-N.sock` for the others."""
    return path if worker == 0 else path.with_name(f"{path.stem}-worker-{worker}{path.suffix}")


def orphaned_queues(base: Path, workers: int) -> list[Path]:
    """Queue folders of workers this node no longer runs (after `workers` was lowered)."""
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        m = re.fullmatch(r"worker-(\d+)", child.name)
        if m and child.is_dir() and int(m.group(1)) >= workers:
            found.append(child)
    return sorted(found)


def bind(binding) -> socket.socket:
    """A listening TCP socket for `binding` (ip:port), or SystemExit naming it."""
    family = socket.AF_INET6 if binding.ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((binding.host, binding.port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        raise SystemExit(f"exgateway: cannot listen on {binding}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


def inherited_sockets(environ=os.environ) -> dict[str, int]:
    """binding text -> descriptor, as worker 0 passed them (empty in worker 0)."""
    text = environ.get(LISTEN_FDS, "")
    fds = {}
    for item in filter(None, text.split(";")):
        binding, _, fd = item.rpartition("=")
        fds[binding] = int(fd)
    return fds


class Listener(Service):
    """
    One SMTP binding served by this process: a socket bound here (worker 0)
    or inherited from worker 0. Bound in privilegedStartService, so port 25
    opens before twistd drops privileges; a binding that cannot be opened
    stops start-up.
    """

    def __init__(self, reactor, binding, factory, inherited_fd: int | None = None) -> None:
        self.reactor = reactor
        self.binding = binding
        self.factory = factory
        self.inherited_fd = inherited_fd
        self.socket: socket.socket | None = None
        self.port = None

    def fileno(self) -> int | None:
        return self.socket.fileno() if self.socket is not None else self.inherited_fd

    def privilegedStartService(self) -> None:
        if self.inherited_fd is None:
            self.socket = bind(self.binding)
        family = socket.AF_INET6 if self.binding.ipv6 else socket.AF_INET
        # The reactor listens on its own duplicate of the descriptor.
        self.port = self.reactor.adoptStreamPort(self.fileno(), family, self.factory)
        if self.inherited_fd is not None:
            os.close(self.inherited_fd)
        super().privilegedStartService()

    def stop_accepting(self):
        """No new connection from now on (a stop: gateway/smtpd/shutdown.py); the sessions open go on."""
        port, self.port = self.port, None
        if self.socket is not None:
            # Else the kernel would go on completing handshakes into a backlog nobody reads.
            self.socket.close()
            self.socket = None
        return port.stopListening() if port is not None else None

    def stopService(self):
        super().stopService()
        return self.stop_accepting()


# A twistd log line: time, [namespace#level] (legacy log calls: [-]), text.
_LINE = re.compile(r"^\d\S+ \[(?P<namespace>[^\]#]+)(?:#(?P<level>\w+))?\] (?P<text>.*)$")


class WorkerProtocol(ProcessProtocol):
    """One child worker: its log lines into this process's log, its end to the supervisor."""

    def __init__(self, supervisor: WorkerSupervisor, worker: int) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._log(line.decode("utf-8", "replace").rstrip("\r"))

    errReceived = outReceived

    def _log(self, line: str) -> None:
        if not line:
            return
        m = _LINE.match(line)
        level = LogLevel.info
        if m:
            try:
                level = LogLevel.levelWithName(m.group("level") or "info")
            except InvalidLogLevelError:
                pass
            line = f"[{m.group('namespace')}] {m.group('text')}"
        log.emit(level, "worker {worker}: {line}", worker=self.worker, line=line)

    def processEnded(self, reason) -> None:
        if self._partial:
            self._log(self._partial.decode("utf-8", "replace"))
        self.supervisor.ended(self.worker, reason)


class WorkerSupervisor(Service):
    """Worker 0's children: started with the listening sockets, restarted if they exit, stopped with it."""

    def __init__(self, reactor, count: int, argv, listeners: list[Listener], stop_timeout: float = STOP_TIMEOUT) -> None:
        """argv: worker number -> the child's command line (argv[0] is the executable)."""
        self.reactor = reactor
        # A worker still running this long after its SIGTERM is killed (longer than its own shutdown_grace).
        self.stop_timeout = stop_timeout
        self.count = count
        self.argv = argv
        self.listeners = listeners
        self.processes: dict[int, IProcessTransport] = {}
        self.delays: dict[int, float] = {}
        self._started_at: dict[int, float] = {}
        self._stopped: dict[int, Deferred] = {}
        self._restarts: dict[int, IDelayedCall] = {}

    def startService(self) -> None:
        super().startService()
        for worker in range(1, self.count):
            self._spawn(worker)

    def _spawn(self, worker: int) -> None:
        self._restarts.pop(worker, None)
        child_fds: dict[int, object] = {0: "w", 1: "r", 2: "r"}
        mapping = []
        for i, listener in enumerate(self.listeners):
            child_fds[3 + i] = listener.fileno()
            mapping.append(f"{listener.binding}={3 + i}")
        env = dict(child_environment(), **{LISTEN_FDS: ";".join(mapping)})
        argv = self.argv(worker)
        self._started_at[worker] = self.reactor.seconds()
        self.processes[worker] = self.reactor.spawnProcess(
            WorkerProtocol(self, worker), argv[0], argv, env=env, path=os.getcwd(), childFDs=child_fds
        )
        log.info("started worker {worker} (pid {pid})", worker=worker, pid=self.processes[worker].pid)

    def ended(self, worker: int, reason) -> None:
        self.processes.pop(worker, None)
        waiting = self._stopped.pop(worker, None)
        if waiting is not None:
            waiting.callback(None)
            return
        if not self.running:
            return
        # A worker that had been running a while starts over from the shortest delay.
        if self.reactor.seconds() - self._started_at.get(worker, 0.0) > STABLE_AFTER:
            self.delays.pop(worker, None)
        delay = self.delays.get(worker, RESTART_DELAY)
        self.delays[worker] = min(delay * 2, MAX_RESTART_DELAY)
        log.error(
            "worker {worker} ended ({why}); restarting it in {delay:.0f} s",
            worker=worker, why=reason.getErrorMessage(), delay=delay,
        )
        self._restarts[worker] = self.reactor.callLater(delay, self._spawn, worker)

    def signal_all(self, signal_name: str) -> None:
        for process in list(self.processes.values()):
            try:
                process.signalProcess(signal_name)
            except error.ProcessExitedAlready:
                pass

    def reload_all(self) -> None:
        """Have every other worker re-read the configuration (a line on its standard input: see ParentLink)."""
        for process in list(self.processes.values()):
            process.write(b"reload\n")

    def stopService(self):
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        waits = []
        for worker in list(self.processes):
            d = self._stopped[worker] = Deferred()
            waits.append(d)
        self.signal_all("TERM")
        # A worker that has not finished its sessions by then is killed.
        kill = self.reactor.callLater(self.stop_timeout, self.signal_all, "KILL")

        def done(_):
            if kill.active():
                kill.cancel()

        return DeferredList(waits).addCallback(done)


class ParentLink(Service):
    """
    In a child worker: worker 0 speaks through this process's standard
    input. A line "reload" re-reads the configuration (worker 0 passes on
    its SIGHUP this way: a signal could reach a worker still starting, before
    it handles one, and end it). End of file means worker 0 is gone (even by
    SIGKILL), and a worker must not go on serving alone with nobody to
    restart or stop it.
    """

    def __init__(self, reactor, reload, fd: int = 0) -> None:
        self.reactor = reactor
        self.reload = reload
        self.fd = fd
        self._partial = b""

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "ParentLink"

    def doRead(self):
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            return CONNECTION_DONE
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip() == b"reload":
                self.reload()
        return None

    def connectionLost(self, reason) -> None:
        if self.running and not self._shutting_down:
            log.error("worker 0 is gone; this worker stops")
            self.reactor.stop()

    def _shutdown(self) -> None:
        self._shutting_down = True

    def _stop_once(self, signum, frame) -> None:
        self.reactor.callFromThread(self._stop_if_running)

    def _stop_if_running(self) -> None:
        if not self._shutting_down:
            self.reactor.stop()

    def startService(self) -> None:
        super().startService()
        self._shutting_down = False
        self.reactor.addSystemEventTrigger("before", "shutdown", self._shutdown)
        # A worker often gets two stop signals: worker 0's SIGTERM, and the one
        # systemd (control group) or a terminal (process group) sends to every
        # process. The second must not be an error.
        self.reactor.callWhenRunning(self._own_stop_signals)
        os.set_blocking(self.fd, False)
        self.reactor.addReader(self)

    def _own_stop_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._stop_once)
        signal.signal(signal.SIGINT, self._stop_once)

    def stopService(self):
        super().stopService()
        self.reactor.removeReader(self)


def child_argv(config_path: Path, role: str):
    """
    The command line of worker N: the same twistd plugin, config file and role.

    `-P -m gateway.worker`: the worker imports what worker 0 imported, never
    a `gateway/` that happens to sit in its current directory (`python -c`
    would put the current directory first on sys.path). The config path is
    absolute, so the worker reads worker 0's file, not the one its own
    search would find.
    """

    def argv(worker: int) -> list[str]:
        return [sys.executable, "-P", "-m", "gateway.worker", "-n", "--pidfile=", "--logfile=-",
                "exgateway", "--role", role, "--worker", str(worker), "--config", str(Path(config_path).absolute())]

    return argv


def child_environment(environ=os.environ) -> dict[str, str]:
    """
    Worker 0's environment for a worker, with PYTHONPATH made absolute: a
    relative entry would otherwise name another directory if the worker
    started elsewhere (and `-P` keeps the current directory out of the path).
    """
    env = dict(environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p for p in env["PYTHONPATH"].split(os.pathsep))
    return env
