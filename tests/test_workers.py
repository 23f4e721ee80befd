"""The pieces of a multi-process node: names per worker, sockets bound and inherited, the supervisor, the parent link."""

import os
import socket
from pathlib import Path

import pytest
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from gateway import workers
from gateway.config import Binding, parse_binding
from gateway.workers import (
    LISTEN_FDS,
    Listener,
    ParentLink,
    WorkerProtocol,
    WorkerSupervisor,
    admin_socket,
    inherited_sockets,
    orphaned_queues,
    queue_directory,
)


def test_each_worker_has_its_own_queue_and_admin_socket(tmp_path):
    assert queue_directory(tmp_path / "queue", 0) == tmp_path / "queue"
    assert queue_directory(tmp_path / "queue", 2) == tmp_path / "queue" / "worker-2"
    assert admin_socket(Path("var/run/admin.sock"), 0) == Path("var/run/admin.sock")
    assert admin_socket(Path("var/run/admin.sock"), 1) == Path("var/run/admin-worker-1.sock")
    assert admin_socket(Path("var/run/admin-frontend.sock"), 3) == Path("var/run/admin-frontend-worker-3.sock")


def test_orphaned_queues_are_those_of_workers_no_longer_run(tmp_path):
    for name in ("worker-1", "worker-2", "worker-10", "failed", "worker-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "worker-3").write_text("a file, not a queue")
    assert orphaned_queues(tmp_path, 2) == [tmp_path / "worker-10", tmp_path / "worker-2"]
    assert orphaned_queues(tmp_path, 11) == []
    assert orphaned_queues(tmp_path / "missing", 1) == []


def test_inherited_sockets_name_binding_and_descriptor():
    assert inherited_sockets({LISTEN_FDS: "127.0.0.1:25=3;[::1]:587=4"}) == {"127.0.0.1:25": 3, "[::1]:587": 4}
    assert inherited_sockets({}) == {}


class FakeReactor(Clock):
    def __init__(self):
        super().__init__()
        self.adopted = []
        self.spawned = []
        self.readers = []
        self.stopped = False

    def adoptStreamPort(self, fd, family, factory):
        self.adopted.append((fd, family, factory))
        return FakePort()

    def spawnProcess(self, protocol, executable, args, env, path, childFDs):
        process = FakeProcess(protocol, len(self.spawned) + 100)
        self.spawned.append((protocol, executable, args, env, path, childFDs, process))
        return process

    def addReader(self, reader):
        self.readers.append(reader)

    def removeReader(self, reader):
        if reader in self.readers:
            self.readers.remove(reader)

    def stop(self):
        self.stopped = True

    def addSystemEventTrigger(self, phase, event, f):
        self.triggers = [*getattr(self, "triggers", []), (phase, event, f)]

    def callWhenRunning(self, f):
        self.when_running = f


class FakePort:
    stopped = False

    def stopListening(self):
        self.stopped = True


class FakeProcess:
    def __init__(self, protocol, pid):
        self.protocol = protocol
        self.pid = pid
        self.signals = []
        self.written = b""

    def signalProcess(self, name):
        self.signals.append(name)

    def write(self, data):
        self.written += data


def _free_binding() -> Binding:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return parse_binding(f"127.0.0.1:{s.getsockname()[1]}")


def test_worker_0_binds_and_the_reactor_serves_a_duplicate():
    reactor, binding = FakeReactor(), _free_binding()
    listener = Listener(reactor, binding, "factory")
    listener.privilegedStartService()
    try:
        fd, family, factory = reactor.adopted[0]
        assert (family, factory) == (socket.AF_INET, "factory")
        assert socket.socket(fileno=os.dup(fd)).getsockname() == ("127.0.0.1", binding.port)
    finally:
        listener.stopService()
    assert listener.socket is None


def test_a_binding_already_in_use_stops_start_up_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        binding = parse_binding(f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(SystemExit) as e:
            Listener(FakeReactor(), binding, "factory").privilegedStartService()
    assert str(e.value) == f"exgateway: cannot listen on {binding}: Address already in use"


def test_a_child_serves_the_inherited_descriptor_and_closes_its_copy():
    reactor, binding = FakeReactor(), _free_binding()
    sock = workers.bind(binding)
    fd = os.dup(sock.fileno())
    Listener(reactor, binding, "factory", inherited_fd=fd).privilegedStartService()
    assert reactor.adopted[0][0] == fd
    with pytest.raises(OSError):
        os.fstat(fd)
    sock.close()


def _supervisor(count=3):
    reactor, binding = FakeReactor(), _free_binding()
    listener = Listener(reactor, binding, "factory")
    listener.privilegedStartService()
    supervisor = WorkerSupervisor(reactor, count, lambda w: ["python", "twistd", "--worker", str(w)], [listener])
    return reactor, listener, supervisor


def _end(process, code=1):
    process.protocol.processEnded(Failure(ProcessTerminated(exitCode=code)))


def test_the_supervisor_starts_the_others_with_the_sockets():
    reactor, listener, supervisor = _supervisor()
    supervisor.startService()
    try:
        assert [args for _, _, args, *_ in reactor.spawned] == [["python", "twistd", "--worker", "1"], ["python", "twistd", "--worker", "2"]]
        _, executable, _, env, path, child_fds, _ = reactor.spawned[0]
        assert executable == "python" and path == os.getcwd()
        assert child_fds == {0: "w", 1: "r", 2: "r", 3: listener.fileno()}
        assert env[LISTEN_FDS] == f"{listener.binding}=3"
    finally:
        listener.stopService()


def test_a_worker_that_ends_is_restarted_later_each_time_it_keeps_ending():
    reactor, listener, supervisor = _supervisor(2)
    supervisor.startService()
    try:
        _end(reactor.spawned[0][-1])
        assert len(reactor.spawned) == 1
        reactor.advance(1.0)
        assert len(reactor.spawned) == 2
        _end(reactor.spawned[1][-1])
        reactor.advance(1.9)
        assert len(reactor.spawned) == 2
        reactor.advance(0.1)
        assert len(reactor.spawned) == 3
        # One that ran for a while is restarted after the shortest delay again.
        reactor.advance(workers.STABLE_AFTER + 1)
        _end(reactor.spawned[2][-1])
        reactor.advance(1.0)
        assert len(reactor.spawned) == 4
    finally:
        listener.stopService()


def test_stopping_ends_the_others_first_and_kills_one_that_lingers():
    reactor, listener, supervisor = _supervisor(3)
    supervisor.startService()
    one, two = (s[-1] for s in reactor.spawned)
    done = []
    supervisor.stopService().addCallback(done.append)
    assert one.signals == two.signals == ["TERM"]
    _end(one, 0)
    assert done == []
    reactor.advance(workers.STOP_TIMEOUT)
    assert two.signals == ["TERM", "KILL"]
    _end(two)
    assert len(done) == 1
    # Nothing is restarted after a stop.
    reactor.advance(60)
    assert len(reactor.spawned) == 2
    listener.stopService()


def test_a_reload_goes_to_every_worker_as_a_line():
    reactor, listener, supervisor = _supervisor(3)
    supervisor.startService()
    supervisor.reload_all()
    assert [s[-1].written for s in reactor.spawned] == [b"reload\n", b"reload\n"]
    listener.stopService()


def test_a_workers_log_lines_join_worker_0s_log_at_their_level(monkeypatch):
    events = []
    monkeypatch.setattr(workers, "log", workers.Logger(namespace="exgateway.workers", observer=events.append))
    protocol = WorkerProtocol(None, 2)
    protocol.outReceived(b"2026-11-27T05:00:00+0000 [exgateway.queue#warn] deferred 12 to <a@b>\n2026-11-27T05:00:00+0000 [-] Bind")
    protocol.errReceived(b"ing on 25\nTraceback (most recent call last):\n")
    assert [(e["log_level"], e["line"]) for e in events] == [
        (LogLevel.warn, "[exgateway.queue] deferred 12 to <a@b>"),
        (LogLevel.info, "[-] Binding on 25"),
        (LogLevel.info, "Traceback (most recent call last):"),
    ]
    assert all(e["worker"] == 2 for e in events)


def test_the_parent_link_reloads_on_a_line_and_stops_the_worker_when_worker_0_is_gone():
    reactor = FakeReactor()
    reloads = []
    read_end, write_end = os.pipe()
    link = ParentLink(reactor, lambda: reloads.append(1), read_end)
    link.startService()
    try:
        os.write(write_end, b"relo")
        assert link.doRead() is None and reloads == []
        os.write(write_end, b"ad\nreload\n")
        assert link.doRead() is None and reloads == [1, 1]
        assert link.doRead() is None  # nothing to read yet
        os.close(write_end)
        reason = link.doRead()
        assert reason is not None
        link.connectionLost(Failure(reason))
        assert reactor.stopped
    finally:
        os.close(read_end)
