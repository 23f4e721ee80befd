"""
A node of several worker processes ([server] workers): they share the
listening ports, each queues and delivers what it accepted, the commands
show them as one node, worker 0 restarts the others and passes reloads on,
and a worker whose parent is gone stops.
"""

import csv
import os
import re
import signal
import smtplib
import threading
import time

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import Gateway, exgateway_cli, free_port, message_files
from tests.integration.test_outbound import relay_gateway, send


def worker_pids(gw: Gateway, worker: int = 1) -> list[int]:
    return [int(p) for p in re.findall(rf"started worker {worker} \(pid (\d+)\)", gw.log())]


def wait_for_worker(gw: Gateway, worker: int = 1, count: int = 1) -> int:
    """The pid of the worker once it serves (its admin socket is the last thing it opens)."""
    gw.wait_until(lambda: gw.log().count(f"admin-worker-{worker}.sock") >= count, what=f"worker {worker} up")
    return worker_pids(gw, worker)[-1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent, the test, reaps nothing here).
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def test_workers_share_the_port_and_each_queues_what_it_accepted(tmp_path):
    gw = Gateway(tmp_path, workers=2).start()
    try:
        wait_for_worker(gw)
        errors = []

        def client(n: int) -> None:
            try:
                for i in range(3):
                    with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=30) as s:
                        s.sendmail("app@devices.example", ["alice@corp.example"], f"Subject: {n}-{i}\r\n\r\nbody\r\n".encode())
            except Exception as e:  # reported below, with the others
                errors.append(e)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        delivered = gw.wait_until(lambda: len(gw.mailbox("alice@corp.example")) == 48 and gw.mailbox("alice@corp.example"),
                                  what="48 messages in the mailbox")
        assert sorted(re.search(rb"Subject: (\S+)", m).group(1) for m in delivered) == sorted(
            f"{n}-{i}".encode() for n in range(16) for i in range(3))
        # Ids alternate between the workers (even: worker 0, odd: worker 1); both took connections.
        ids = [int(re.search(rb"\) id (\d+);", m).group(1)) for m in delivered]
        assert len(set(ids)) == 48 and {i % 2 for i in ids} == {0, 1}

        # Each worker writes protocol-log files of its own, and no session id is used twice.
        logs = gw.var / "logs" / "ProtocolLog" / "FrontEnd" / "SmtpReceive"
        gw.wait_until(lambda: sum(f.read_text().count(",+,") for f in logs.glob("RECV*.LOG")) >= 48, what="the protocol logs flushed")
        files = sorted(logs.glob("RECV*.LOG"))
        assert len(files) >= 2 and all(f.read_text().count("#Fields:") == 1 for f in files)
        starts = [row[2] for f in files for row in csv.reader(f.read_text().splitlines()) if len(row) > 6 and row[6] == "+"]
        assert len(starts) == len(set(starts)) >= 48
    finally:
        gw.stop()


def relay_with_both_queues_held(directory) -> tuple[Gateway, int]:
    """Two workers whose next hop is down (retry in an hour), each holding at least one message."""
    port = free_port()
    gw = relay_gateway(directory, f"127.0.0.1:{port}", 'connection_timeout = "2s"', retry="1h", workers=2)
    wait_for_worker(gw)
    # Sessions go to whichever worker accepts first: send until each holds a message.
    for n in range(40):
        send(gw, ["far@outside.example"], f"Subject: m{n}\r\n\r\nbody\r\n".encode())
        if all(message_files(q) for q in (gw.var / "queue", gw.var / "queue" / "worker-1")):
            return gw, port
    gw.stop()
    raise AssertionError("40 messages, and one worker still holds none")


def test_queue_commands_show_the_node_as_one(tmp_path):
    gw, port = relay_with_both_queues_held(tmp_path / "gw")
    hop = None
    try:
        total = len(gw.queued())

        def all_deferred():
            listed = exgateway_cli(gw.config, "queue", "list").stdout.splitlines()
            return listed if len(listed) == 3 and listed[2].split()[2:4] == ["Retry", str(total)] else None

        gw.wait_until(all_deferred, what="every message deferred")
        listed = exgateway_cli(gw.config, "queue", "list").stdout.splitlines()
        assert len(listed) == 3 and listed[2].split()[:5] == ["EXSERVER\\ISP", "SmartHostConnectorDelivery", "Retry", str(total), "ISP"]
        messages = exgateway_cli(gw.config, "queue", "messages").stdout.splitlines()[2:]
        ids = [line.split()[0] for line in messages]
        assert len(ids) == total and ids == sorted(ids, key=int)

        # A message of worker 1, found and removed through the node's commands.
        theirs = next(p.name[:-4] for p in message_files(gw.var / "queue" / "worker-1"))
        assert "Subject: m" in exgateway_cli(gw.config, "message", "export", theirs).stdout
        removed = exgateway_cli(gw.config, "message", "remove", theirs)
        assert removed.returncode == 0 and removed.stdout.strip() == f"removed {theirs}"
        missing = exgateway_cli(gw.config, "message", "remove", theirs)
        assert missing.returncode == 1 and missing.stderr.strip() == f"exgateway: no message '{theirs}' in the queue"

        hop = CaptureServer("127.0.0.1", port)
        # The queue named by its Identity exactly as `queue list` prints it; both workers' messages go.
        retried = exgateway_cli(gw.config, "queue", "retry", listed[2].split()[0])
        assert retried.stdout.strip() == f"ISP: {total - 1} message(s) retried now"
        gw.wait_until(lambda: len(hop.transactions) == total - 1, what="both workers' messages delivered")
        gw.wait_until(lambda: exgateway_cli(gw.config, "queue", "list").stdout.strip() == "(none)", what="the queues empty")
    finally:
        gw.stop()
        if hop is not None:
            hop.stop()


def test_worker_0_restarts_a_worker_passes_reloads_on_and_its_end_stops_the_others(tmp_path):
    gw = Gateway(tmp_path, workers=2).start()
    try:
        first = wait_for_worker(gw)
        os.kill(first, signal.SIGKILL)
        gw.wait_until(lambda: "worker 1 ended" in gw.log() and "restarting it in 1 s" in gw.log(), what="the restart notice")
        second = wait_for_worker(gw, count=2)
        assert second != first and alive(second)
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=30) as s:
            s.sendmail("app@devices.example", ["alice@corp.example"], b"Subject: after\r\n\r\nx\r\n")
        gw.wait_until(lambda: gw.mailbox("alice@corp.example"), what="a message after the restart")

        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_until(lambda: "worker 1: [exgateway.reload] configuration reloaded" in gw.log(), what="worker 1 reloading")

        gw.kill()
        deadline = time.monotonic() + 15
        while alive(second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(second), "worker 1 outlived worker 0"
    finally:
        gw.stop()


def test_fewer_workers_take_in_the_queue_of_a_worker_no_longer_run(tmp_path):
    gw, port = relay_with_both_queues_held(tmp_path / "gw")
    hop = None
    try:
        held = gw.queued()
        gw.stop()
        gw.config.write_text(gw.config.read_text().replace("workers = 2", "workers = 1"))
        hop = CaptureServer("127.0.0.1", port)
        gw.start()
        assert "took in" in gw.wait_until(lambda: "took in" in gw.log() and gw.log(), what="the orphaned queue taken in")
        # Their next attempt is an hour away, as before the restart: attempt them now. (A message queued just
        # before the stop and not yet tried is tried at the start, so it may be delivered before this counts it.)
        retried = exgateway_cli(gw.config, "queue", "retry", "ISP").stdout.strip()
        assert retried in {f"ISP: {n} message(s) retried now" for n in range(1, len(held) + 1)} or not retried, retried
        gw.wait_until(lambda: len(hop.transactions) == len(held), what="every queued message delivered")
        assert not message_files(gw.var / "queue" / "worker-1")
    finally:
        gw.stop()
        if hop is not None:
            hop.stop()


def test_the_metrics_page_covers_every_worker(tmp_path):
    import urllib.request

    health_port = free_port()
    gw = Gateway(tmp_path, workers=2, extra=f'[health]\nlisten = "127.0.0.1:{health_port}"\n').start()
    try:
        wait_for_worker(gw)
        sent = 0
        # Connections go to whichever worker accepts first: send until both have taken one.
        while sent < 40 and {int(re.search(rb"\) id (\d+);", m).group(1)) % 2 for m in gw.mailbox("alice@corp.example")} != {0, 1}:
            with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=30) as s:
                s.sendmail("app@devices.example", ["alice@corp.example"], b"Subject: counted\r\n\r\nx\r\n")
            sent += 1
            gw.wait_until(lambda sent=sent: len(gw.mailbox("alice@corp.example")) == sent, what="the message delivered")
        page = urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=10).read().decode()
        accepted = {w: float(v) for w, v in re.findall(
            r'^exgateway_messages_accepted_total\{connector="Default Frontend",worker="(\d)"\} (\S+)$', page, re.MULTILINE)}
        assert set(accepted) == {"0", "1"} and sum(accepted.values()) == sent
        assert 'exgateway_worker_up{worker="0"} 1.0' in page and 'exgateway_worker_up{worker="1"} 1.0' in page
    finally:
        gw.stop()


def test_suspending_a_queue_holds_it_on_every_worker(tmp_path):
    """Even on a worker with no message for that next hop yet: the mail it takes next waits too."""
    import json

    from gateway.admin.queues import call

    port = free_port()
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{port}", 'connection_timeout = "2s"', retry="1h", workers=2)
    try:
        wait_for_worker(gw)
        send(gw, ["far@outside.example"], b"Subject: one\r\n\r\nbody\r\n")
        assert exgateway_cli(gw.config, "queue", "suspend", "ISP").stdout.strip() == "ISP: Suspended"
        sockets = [gw.var / "run" / "admin.sock", gw.var / "run" / "admin-worker-1.sock"]
        statuses = [{q["Name"]: q["Status"] for q in json.loads(call(path, "GET", "/queues")[1])} for path in sockets]
        assert [s.get("ISP") for s in statuses] == ["Suspended", "Suspended"]
        assert exgateway_cli(gw.config, "queue", "resume", "ISP").stdout.strip() == "ISP: 1 message(s) retried now"
        statuses = [{q["Name"]: q["Status"] for q in json.loads(call(path, "GET", "/queues")[1])} for path in sockets]
        assert "Suspended" not in [s.get("ISP") for s in statuses]
    finally:
        gw.stop()


def test_workers_run_worker_0s_package_and_config_whatever_their_directory_holds(tmp_path):
    """
    Started from a directory holding another `gateway/` package and another
    exgateway.toml, every worker imports the package worker 0 imported and
    reads worker 0's file: both workers deliver into worker 0's var_dir, the
    other package is never imported and the other file's var_dir never made.
    """
    decoy = tmp_path / "decoy"
    (decoy / "gateway").mkdir(parents=True)
    marker = decoy / "imported"
    (decoy / "gateway" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('decoy gateway')\n")
    gw = Gateway(tmp_path / "gw", workers=2)
    (decoy / "exgateway.toml").write_text(gw.config.read_text().replace(str(gw.var), str(decoy / "var")))
    gw.start(cwd=decoy)
    try:
        pid = wait_for_worker(gw)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[argv.index(b"--config") + 1] == str(gw.config).encode()
        assert b"-c" not in argv
        ids = set()
        for i in range(40):
            with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=30) as s:
                s.sendmail("app@devices.example", ["alice@corp.example"], f"Subject: {i}\r\n\r\nbody\r\n".encode())
            ids = {int(re.search(rb"\) id (\d+);", m).group(1)) % 2 for m in gw.mailbox("alice@corp.example")}
            if ids == {0, 1}:
                break
        assert ids == {0, 1}, "both workers took connections"
        assert not marker.exists()
        assert not (decoy / "var").exists()
    finally:
        gw.stop()
