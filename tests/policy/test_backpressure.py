"""
Back pressure (issue 17, item 4), with an injected free-space probe and
task.Clock: 452 4.3.1 at MAIL below the threshold, accepted again only
above the higher one, one log line per change, readiness and the metric
agree; and a disk that fills mid-DATA gets a clean 451 4.3.0, not a crash.
"""

import errno

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gateway.admin.health import NodeState, Readiness
from gateway.policy.backpressure import BackPressure
from gateway.queue import entry as entry_module
from gateway.queue import store as store_module
from tests.test_intake import Hub

MB = 1024 * 1024


class Disk:
    def __init__(self, free):
        self.free = free

    def __call__(self):
        return self.free


def run_sync(f, *args):
    """The store's thread, inline: an exception comes back as a failed Deferred, as SerialThread.call gives it."""
    try:
        return succeed(f(*args))
    except Exception as e:
        return fail(e)


def captured():
    events = []
    globalLogPublisher.addObserver(events.append)
    return events, lambda: globalLogPublisher.removeObserver(events.append)


def pressure_lines(events):
    return [e["log_format"].split(":")[0] for e in events if e.get("log_namespace") == "exgateway.backpressure"]


def test_refuses_below_the_threshold_and_resumes_only_above_the_higher_one():
    clock, disk = Clock(), Disk(500 * MB)
    bp = BackPressure(disk, clock, low=100 * MB, where="/var/queue")
    events, stop = captured()
    try:
        bp.startService()
        assert not bp.refusing
        disk.free = 99 * MB
        clock.advance(1)
        assert bp.refusing
        # Between the thresholds: still refusing, whichever way it moves (no flapping), and no new line.
        for free in (120, 101, 149, 90, 149):
            disk.free = free * MB
            clock.advance(1)
            assert bp.refusing
        disk.free = 150 * MB
        clock.advance(1)
        assert not bp.refusing
        disk.free = 120 * MB
        clock.advance(1)
        assert not bp.refusing
        bp.stopService()
    finally:
        stop()
    assert pressure_lines(events) == ["back pressure", "back pressure over"]
    assert clock.getDelayedCalls() == []


def test_a_probe_that_fails_keeps_the_state_and_is_logged_once():
    clock = Clock()
    calls = []

    def broken():
        calls.append(1)
        raise OSError(errno.EIO, "Input/output error")

    bp = BackPressure(broken, clock, low=100 * MB, where="/var/queue")
    events, stop = captured()
    try:
        bp.startService()
        clock.advance(1)
        clock.advance(1)
        bp.stopService()
    finally:
        stop()
    assert len(calls) == 3 and not bp.refusing
    assert len([e for e in events if e.get("log_namespace") == "exgateway.backpressure"]) == 1


def test_mail_gets_452_4_3_1_under_back_pressure_and_250_after(tmp_path):
    hub = Hub(tmp_path)
    disk = Disk(50 * MB)
    hub.handler.pressure = bp = BackPressure(disk, hub.clock, low=100 * MB, where="queue")
    bp.check()
    lines = hub.send(b"EHLO fe.corp.example\r\nMAIL FROM:<scan@corp.example>\r\n")
    assert lines[-1] == "452 4.3.1 Insufficient system resources"
    # The session goes on; a later MAIL, once space is back, is taken.
    disk.free = 200 * MB
    bp.check()
    lines = hub.send(b"MAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    assert lines[0] == "250 2.1.0 Sender OK" and lines[-1].startswith("250 2.6.0 ")


def test_readiness_says_what_smtp_does(tmp_path):
    clock, disk = Clock(), Disk(50 * MB)
    bp = BackPressure(disk, clock, low=100 * MB, where="/var/queue")
    bp.check()
    readiness = Readiness(NodeState(tmp_path / "draining"), None, 0, None, None, clock)
    readiness.pressure = bp
    out = []
    readiness.check().addCallback(out.append)
    code, body = out[0]
    assert code == 503 and body["failing"] == ["back_pressure"]
    assert body["checks"]["back_pressure"]["detail"] == (
        "back pressure: 50 MB free in /var/queue, below 100 MB; refusing new messages until 150 MB are free"
    )
    disk.free = 150 * MB
    bp.check()
    out = []
    readiness.check().addCallback(out.append)
    assert out[0][0] == 200
    metric = {m.name: m.samples[0].value for m in bp.collect()}
    assert metric == {"exgateway_back_pressure": 0.0, "exgateway_back_pressure_resource": 0.0, "exgateway_queue_free_bytes": 150.0 * MB}


def test_a_disk_that_fills_mid_data_gets_a_clean_451_and_the_session_goes_on(tmp_path, monkeypatch):
    """ENOSPC while a big body spills to its file: 451 4.3.0 after the body, no traceback, nothing left on disk, next MAIL served."""
    hub = Hub(tmp_path)
    real_create = entry_module.create_file
    full = {"on": True}

    def create_file(path):
        # The spill past QueueEntry.SPILL creates the message's file: the disk is full.
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_create(path)

    monkeypatch.setattr(entry_module, "create_file", create_file)
    hub.store._run = hub.store.spares._run = run_sync
    events, stop = captured()
    try:
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2000
        lines = hub.send(b"EHLO fe.corp.example\r\nMAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
        assert lines[-1].startswith("354")
        for i in range(0, len(big), 65536):
            assert hub.send(big[i:i + 65536]) == []
        assert hub.send(b".\r\n") == ["451 4.3.0 Temporary server error. Please try again later"]
        full["on"] = False
        assert hub.deliver(b"Subject: small\r\n\r\nhi\r\n").startswith("250 2.6.0 ")
    finally:
        stop()
    assert not any(e.get("log_failure") for e in events)
    assert not hub.transport.disconnecting
    assert len(hub.scheduler.queued) == 1
    assert [p.name for p in (tmp_path / "queue").glob("*.eml") if store_module.holds_message(p)] == [hub.scheduler.queued[0].queue_id + ".eml"]


def test_a_failed_commit_gets_a_clean_451(tmp_path, monkeypatch):
    """ENOSPC at the commit's fsync: 451 4.3.0, logged as a refusal, not a critical traceback."""
    hub = Hub(tmp_path)

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    hub.store._run = hub.store.spares._run = run_sync
    events, stop = captured()
    try:
        assert hub.deliver(b"Subject: small\r\n\r\nhi\r\n") == "451 4.3.0 Temporary server error. Please try again later"
    finally:
        stop()
    assert not any(e.get("log_failure") for e in events)
    assert hub.scheduler.queued == []


class Memory:
    """/proc/meminfo as the test says: (MemAvailable, MemTotal) in bytes."""

    def __init__(self, used_percent, total=1000 * MB):
        self.total = total
        self.set(used_percent)

    def set(self, used_percent):
        self.available = self.total * (100 - used_percent) // 100

    def __call__(self):
        return self.available, self.total


def test_memory_above_the_limit_refuses_and_resumes_only_at_1_5_times_the_available_share():
    """Exchange's PercentagePhysicalMemoryUsedLimit 94: refused above 94% used, taken again at 91%, one line each, naming memory."""
    clock, disk, memory = Clock(), Disk(500 * MB), Memory(50)
    bp = BackPressure(disk, clock, low=100 * MB, where="/var/queue", memory=memory)
    events, stop = captured()
    try:
        bp.startService()
        memory.set(94)
        clock.advance(1)
        assert not bp.refusing
        memory.set(95)
        clock.advance(1)
        assert bp.refusing and bp.memory_refusing and not bp.disk_refusing
        for used in (93, 92, 96, 92):
            memory.set(used)
            clock.advance(1)
            assert bp.refusing
        memory.set(91)
        clock.advance(1)
        assert not bp.refusing
        memory.set(93)
        clock.advance(1)
        assert not bp.refusing
        bp.stopService()
    finally:
        stop()
    from twisted.logger import formatEvent

    lines = [(e["resource"], formatEvent(e)) for e in events if e.get("log_namespace") == "exgateway.backpressure"]
    assert lines == [
        ("memory", "back pressure: memory 95% used, above 94%: new messages are refused (452 4.3.1) until at most 91% is used"),
        ("memory", "back pressure over: memory 91% used, at most 91%: messages are accepted again"),
    ]


def test_mail_gets_452_4_3_1_under_memory_pressure_and_250_after(tmp_path):
    hub = Hub(tmp_path)
    memory = Memory(97)
    hub.handler.pressure = bp = BackPressure(Disk(500 * MB), hub.clock, low=100 * MB, where="queue", memory=memory)
    bp.check()
    lines = hub.send(b"EHLO fe.corp.example\r\nMAIL FROM:<scan@corp.example>\r\n")
    assert lines[-1] == "452 4.3.1 Insufficient system resources"
    assert bp.reason() == "back pressure: memory 97% used, above 94%"
    memory.set(90)
    bp.check()
    lines = hub.send(b"MAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    assert lines[0] == "250 2.1.0 Sender OK" and lines[-1].startswith("250 2.6.0 ")


def test_readiness_and_metric_name_the_resource_under_pressure(tmp_path):
    clock, disk, memory = Clock(), Disk(50 * MB), Memory(96)
    bp = BackPressure(disk, clock, low=100 * MB, where="/var/queue", memory=memory)
    bp.check()
    readiness = Readiness(NodeState(tmp_path / "draining"), None, 0, None, None, clock)
    readiness.pressure = bp
    out = []
    readiness.check().addCallback(out.append)
    code, body = out[0]
    assert code == 503 and body["failing"] == ["back_pressure"]
    assert body["checks"]["back_pressure"]["detail"] == (
        "back pressure: 50 MB free in /var/queue, below 100 MB, memory 96% used, above 94%; "
        "refusing new messages until 150 MB are free and at most 91% of memory is used"
    )

    def metric():
        return {(m.name, tuple(s.labels.items())): s.value for m in bp.collect() for s in m.samples}

    assert metric()[("exgateway_back_pressure_resource", (("resource", "memory"),))] == 1.0
    disk.free = 150 * MB
    bp.check()
    out = []
    readiness.check().addCallback(out.append)
    assert out[0][1]["checks"]["back_pressure"]["detail"] == "back pressure: memory 96% used, above 94%; refusing new messages until at most 91% of memory is used"
    assert metric() == {
        ("exgateway_back_pressure", ()): 1.0,
        ("exgateway_back_pressure_resource", (("resource", "disk"),)): 0.0,
        ("exgateway_back_pressure_resource", (("resource", "memory"),)): 1.0,
        ("exgateway_memory_used_percent", ()): 96.0,
        ("exgateway_queue_free_bytes", ()): 150.0 * MB,
    }
    memory.set(50)
    bp.check()
    out = []
    readiness.check().addCallback(out.append)
    assert out[0][0] == 200 and out[0][1]["checks"]["back_pressure"]["detail"] == "accepting messages (150 MB free, memory 50% used)"


def test_the_default_limit_never_refuses_a_normal_machine_and_100_never_refuses():
    for limit, used, refusing in ((94, 80, False), (100, 100, False), (50, 60, True)):
        bp = BackPressure(Disk(500 * MB), Clock(), low=100 * MB, memory=Memory(used), max_memory_percent=limit)
        bp.check()
        assert bp.refusing is refusing


def test_meminfo_reads_available_and_total_from_proc(tmp_path):
    from gateway.policy.backpressure import meminfo

    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       16318412 kB\nMemFree:          512000 kB\nMemAvailable:    8159206 kB\nBuffers:  1 kB\n")
    assert meminfo(str(f)) == (8159206 * 1024, 16318412 * 1024)
    f.write_text("MemTotal:       16318412 kB\nMemFree:          512000 kB\n")
    try:
        meminfo(str(f))
    except OSError as e:
        assert "no MemAvailable" in str(e)
    else:
        raise AssertionError("a meminfo without MemAvailable must fail the probe")
    available, total = meminfo()
    assert 0 < available <= total


def test_a_memory_probe_that_fails_keeps_the_state_and_is_logged_once():
    clock = Clock()

    def broken():
        raise OSError(errno.ENOENT, "No such file or directory")

    bp = BackPressure(Disk(500 * MB), clock, low=100 * MB, memory=broken)
    events, stop = captured()
    try:
        bp.startService()
        clock.advance(1)
        clock.advance(1)
        bp.stopService()
    finally:
        stop()
    assert not bp.refusing
    assert [e["resource"] for e in events if e.get("log_namespace") == "exgateway.backpressure"] == ["memory"]
