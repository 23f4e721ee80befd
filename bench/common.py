"""
Shared pieces of the benchmarks: private Postfix and exgateway instances on
loopback, Postfix's smtp-sink as the next hop, and process measurements.

Everything listens on 127.0.0.1, lives in one temporary directory, and is
stopped by PID (or `postfix -c DIR stop`) when the benchmark ends.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SBIN = "/usr/sbin:/usr/local/sbin:/usr/bin:/bin"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path is None:
        sys.exit(f"{name} not found: install the README's test dependencies (apt-get install -y swaks postfix)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def workdir() -> Path:
    # Postfix and smtp-sink drop privileges: the directory must be reachable by them.
    d = Path(tempfile.mkdtemp(prefix="exgw-bench-"))
    os.chmod(d, 0o755)
    return d


# --- process measurements -------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def cpu_seconds(pids: list[int], include_reaped: bool = True) -> float:
    """User+system CPU of the processes (and of reaped children, which a master's cutime holds)."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])
            if include_reaped:
                ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them,
    so the sum over Postfix's many processes is not inflated by shared libraries."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RSSSampler(threading.Thread):
    """Samples the summed memory (PSS) of a set of processes every 100 ms; keeps the peak."""

    def __init__(self, pids_fn) -> None:
        super().__init__(daemon=True)
        self.pids_fn = pids_fn
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, sum(pss_kb(p) for p in self.pids_fn()))
            self._stop_event.wait(0.1)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(2)
        return self.peak_kb


# --- the load ---------------------------------------------------------------------

def smtp_source(port: int, sessions: int, count: int, size: int) -> None:
    """Postfix's smtp-source: `count` messages of `size` bytes over `sessions` at once, one connection each."""
    subprocess.run(
        [tool("smtp-source"), "-s", str(sessions), "-m", str(count), "-l", str(size),
         "-f", "app@devices.example", "-t", "bench@corp.example", f"127.0.0.1:{port}"],
        check=True, stdout=subprocess.DEVNULL,
    )


def wait_delivered(server, sink, expected: int, timeout: float, label: str = "") -> None:
    """Until the sink has counted `expected` messages and the server's queue is empty (`label` names it in the error)."""
    deadline = time.monotonic() + timeout
    while not (sink.messages >= expected and server.queue_empty()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{label or server.name}: {sink.messages} of {expected} messages at the sink after {timeout:.0f}s")
        time.sleep(0.005)


# --- the next hop ----------------------------------------------------------------

class Sink:
    """Postfix's smtp-sink, counting messages (its -c counter, read as it runs)."""

    def __init__(self, port: int) -> None:
        self.port = port
        args = [tool("smtp-sink"), "-c", f"127.0.0.1:{port}", "1000"]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "nobody"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.messages = 0
        threading.Thread(target=self._read, daemon=True).start()
        wait_for_port(port)

    def _read(self) -> None:
        counter = re.compile(rb"mesg=(\d+)")
        buf = b""
        while True:
            chunk = self.process.stdout.read1(4096)
            if not chunk:
                return
            buf = (buf + chunk)[-256:]
            found = counter.findall(buf)
            if found:
                self.messages = int(found[-1])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- the servers under test ---------------------------------------------------------

POSTFIX_MAIN = """
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.example
mydomain = bench.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = corp.example
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
biff = no
"""


class Postfix:
    """A private Postfix 3.x instance: its own config and queue, relaying to a sink."""

    name = "postfix"

    def __init__(self, base: Path, port: int, sink_port: int) -> None:
        self.dir = base / "postfix"
        self.port = port
        (self.dir / "etc").mkdir(parents=True)
        (self.dir / "queue").mkdir()
        (self.dir / "data").mkdir()
        shutil.chown(self.dir / "data", "postfix")
        (self.dir / "etc" / "main.cf").write_text(POSTFIX_MAIN.format(d=self.dir, sink_port=sink_port))
        master = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            if line and not line[0].isspace() and not line.startswith("#"):
                fields = line.split(None, 7)
                if len(fields) == 8:
                    fields[4] = "n"  # no chroot: this instance lives in a temporary directory
                    if fields[0] == "smtp" and fields[1] == "inet":
                        fields[0] = f"127.0.0.1:{port}"
                    line = " ".join(fields)
            master.append(line)
        (self.dir / "etc" / "master.cf").write_text("\n".join(master) + "\n")

    def start(self) -> None:
        subprocess.run([tool("postfix"), "-c", str(self.dir / "etc"), "start"], check=True, capture_output=True)
        wait_for_port(self.port)

    def stop(self) -> None:
        subprocess.run([tool("postfix"), "-c", str(self.dir / "etc"), "stop"], capture_output=True)

    def master_pid(self) -> int:
        return int((self.dir / "queue" / "pid" / "master.pid").read_text().strip())

    def pids(self) -> list[int]:
        try:
            master = self.master_pid()
        except (OSError, ValueError):
            return []
        return [master, *children(master)]

    def queue_empty(self) -> bool:
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(self.dir / "queue" / sub):
                if files:
                    return False
        return True


def _drain(pipe, path: Path) -> None:
    with open(path, "ab") as out:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            out.write(chunk)
            out.flush()


def _holds_message(path: Path) -> bool:
    """A queue file with a message in it: not empty and not ending in a NUL byte (a zeroed footer)."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\0"
    except FileNotFoundError:
        return False  # delivered meanwhile


class Exgateway:
    """exgateway on its default config, with the mailbox next hop pointed at a sink."""

    name = "exgateway"

    def __init__(self, base: Path, port: int, sink_port: int, topology: str = "all", hub_port: int | None = None,
                 workers: str | None = None) -> None:
        self.dir = base / "exgateway"
        self.dir.mkdir(parents=True)
        self.port = port
        self.hub_port = hub_port or free_port()
        self.topology = topology
        text = (REPO / "etc" / "exgateway.toml").read_text()
        # smtp-source runs up to 100 sessions from one address: lift Exchange's
        # per-source default of 20 (Postfix exempts its mynetworks likewise);
        # scale.py holds 10,000 sessions open: lift the connector's 5,000 too.
        # Every port-25 connector moves (Default and Internal Frontend share
        # the binding): one left on 0.0.0.0:25 stops the start when anything
        # else holds port 25.
        text = re.sub(
            r'^bindings = \["0\.0\.0\.0:25"\]$',
            f'bindings = ["127.0.0.1:{port}"]\nmax_inbound_connection_per_source = "unlimited"\nmax_inbound_connection = "unlimited"',
            text, flags=re.MULTILINE,
        )
        text = text.replace("127.0.0.1:2525", f"127.0.0.1:{self.hub_port}")
        # The submission connectors and the health listeners: loopback, free ports, one per process.
        self.submission_ports = {}
        for public in ("0.0.0.0:587", "0.0.0.0:465"):
            self.submission_ports[int(public.rsplit(":", 1)[1])] = moved = free_port()
            text = text.replace(f'bindings = ["{public}"]', f'bindings = ["127.0.0.1:{moved}"]')
        text = text.replace('listen = "127.0.0.1:8025"', f'listen = "127.0.0.1:{free_port()}"')
        if topology != "all":
            # Both roles from this file on one machine: the frontend's health port, and
            # workers = "auto" gives each role half the cores (gateway/config/load.py).
            text = text.replace('# frontend_listen = "127.0.0.1:8026"', f'frontend_listen = "127.0.0.1:{free_port()}"')
        text = text.replace('var_dir = "var"', f'var_dir = "{self.dir / "var"}"')
        if workers is not None:
            text = text.replace('workers = "auto"', f"workers = {workers}")
        text = text.replace('delivery = "maildir"', 'delivery = "smtp"')
        text = text.replace('# next_hop = "mailstore.corp.example:25"', f'next_hop = "127.0.0.1:{sink_port}"')
        self.config = self.dir / "exgateway.toml"
        self.config.write_text(text)
        self.processes: list[subprocess.Popen] = []

    def start(self, nofile: int | None = None) -> None:
        roles = ["all"] if self.topology == "all" else ["hub", "frontend"]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

        def limits():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        for role in roles:
            # Logs go to a pipe, as under systemd (journald), drained into a
            # file by a thread here: a log file on the queue's file system
            # makes every log line wait on the journal behind the fsyncs.
            process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                 "--logfile=-", "exgateway", "--config", str(self.config), "--role", role],
                cwd=self.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limits,
            )
            threading.Thread(target=_drain, args=(process.stdout, self.dir / f"twistd-{role}.log"), daemon=True).start()
            self.processes.append(process)
            wait_for_port(self.hub_port if role == "hub" else self.port)
        wait_for_port(self.port)
        self._wait_for_workers()

    def _wait_for_workers(self, timeout: float = 30.0) -> None:
        """Until every worker serves: each logs its admin socket last."""
        per_process = self.workers_per_process()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = "".join(p.read_text(errors="replace") for p in self.dir.glob("twistd-*.log"))
            if all(f"-worker-{w}.sock" in logs for w in range(1, per_process)):
                return
            time.sleep(0.1)
        raise TimeoutError(f"exgateway workers not all up after {timeout}s")

    def workers_per_process(self) -> int:
        value = re.search(r"^workers = (\S+)", self.config.read_text(), re.MULTILINE)
        if value is None or value.group(1) == "1":
            return 1
        if value.group(1) != '"auto"':
            return int(value.group(1))
        cpus = len(os.sched_getaffinity(0))
        return cpus if self.topology == "all" else max(1, cpus // 2)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    def pids(self) -> list[int]:
        # twistd's processes and the workers each starts (server.workers).
        return [pid for p in self.processes if p.poll() is None for pid in [p.pid, *children(p.pid)]]

    def queue_empty(self) -> bool:
        # Worker 0's queue and the other workers' (queue/worker-N). Spares and the files of delivered
        # messages kept for reuse are not messages: empty, or ending in a zeroed footer; a message's
        # file ends in its footer's newline (gateway/queue/store.py).
        q = self.dir / "var" / "queue"
        return not any(_holds_message(p) for pattern in ("*.eml", "worker-*/*.eml") for p in q.glob(pattern))
