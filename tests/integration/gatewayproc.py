"""
Run exgateway as a real twistd process on loopback ports, for integration tests.

Each Gateway gets its own directory (config, var/, log) and free ports, and is
stopped by PID. Helpers read what a user would look at: the Maildir files and
the log.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.queue.store import holds_message

REPO = Path(__file__).resolve().parents[2]
# The node secret (gateway/auth/node.py) every gateway of this test run shares, as
# an admin copies it to every node: made by the first gateway that starts.
_SECRETS = tempfile.mkdtemp(prefix="exgw-node-")
atexit.register(shutil.rmtree, _SECRETS, True)
NODE_SECRET = Path(_SECRETS) / "node.secret"
TWISTD = "from twisted.scripts.twistd import run; run()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def config_text(frontend_port: int, hub_port: int, var_dir: Path, extra: str = "", retry: str = "1s", workers: int = 1) -> str:
    return f'''
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
var_dir = "{var_dir}"
workers = {workers}
node_secret_file = "{NODE_SECRET}"

[[accepted_domains]]
domain = "corp.example"

[[receive_connectors]]
name = "Default Frontend"
role = "frontend"
bindings = ["127.0.0.1:{frontend_port}"]
permission_groups = ["AnonymousUsers"]
# The load tests run 50 clients from one address.
max_inbound_connection_per_source = 100
protocol_logging_level = "Verbose"
# Tests read replies, not their timing (the tarpit has its own unit test).
tarpit_interval = "0s"

[[receive_connectors]]
name = "Default"
role = "hub"
bindings = ["127.0.0.1:{hub_port}"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExchangeServer"]

[hub_pool]
hosts = ["127.0.0.1:{hub_port}"]
connect_timeout = "2s"

[queue]
retry_interval = "{retry}"
transient_retry_interval = "{retry}"
{extra}
'''


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM a process we started, SIGKILL if it does not go within `timeout`."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_sink(binary: str, port: int, dump: str, *extra: str) -> subprocess.Popen:
    """Postfix's smtp-sink on loopback, dumping each message to `dump` (a %M. template)."""
    args = [binary, *extra, "-d", dump, f"127.0.0.1:{port}", "20"]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "nobody"]
    proc = subprocess.Popen(args)
    wait_for_port(port, process=proc)
    return proc


def exgateway_cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The `exgateway` command from this checkout, as an admin runs it."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "gateway.admin.cli", "--config", str(config), *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=config.parent, timeout=60,
    )


def anon_relay(port: int, source: str, settings: str = "") -> str:
    """The seed's anonymous relay connector for one client address, as config text (plus connector `settings` lines)."""
    return f"""
[[receive_connectors]]
name = "Anon Relay"
role = "frontend"
bindings = ["127.0.0.1:{port}"]
remote_ip_ranges = ["{source}"]
permission_groups = ["AnonymousUsers"]
tarpit_interval = "0s"
{settings}
[[receive_connectors.permissions]]
user = "NT AUTHORITY\\\\ANONYMOUS LOGON"
extended_rights = ["ms-Exch-SMTP-Accept-Any-Recipient"]
"""


def message_files(directory: Path) -> list[Path]:
    """The messages in one queue folder: its `<id>.eml` files but the spares and retired files (gateway/queue/store.py)."""
    return [p for p in directory.glob("*.eml") if holds_message(p)]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # delivered meanwhile


class Gateway:
    def __init__(self, directory: Path, role: str = "all", config: Path | None = None, frontend_port: int | None = None, hub_port: int | None = None, extra: str = "",
                 retry: str = "1s", workers: int = 1) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.frontend_port = frontend_port or free_port()
        self.hub_port = hub_port or free_port()
        self.var = directory / "var"
        self.config = config or directory / "exgateway.toml"
        if config is None:
            self.config.write_text(config_text(self.frontend_port, self.hub_port, self.var, extra, retry, workers))
        self.log_path = directory / f"twistd-{role}.log"
        self.process: subprocess.Popen | None = None

    def add_config(self, text: str) -> None:
        """Add sections (connectors) to this gateway's config file, before [queue]."""
        self.config.write_text(self.config.read_text().replace("[queue]", text + "\n[queue]"))

    def start(self, cwd: Path | None = None) -> Gateway:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(self.log_path, "ab")  # noqa: SIM115 (twistd writes to it until it stops)
        # -P: this checkout's package (PYTHONPATH), never one in the directory twistd runs in.
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", TWISTD, "-n", "--pidfile=", "--logfile=-", "exgateway", "--config", str(self.config), "--role", self.role],
            cwd=cwd or self.directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        ports = {"all": [self.hub_port, self.frontend_port], "hub": [self.hub_port], "frontend": [self.frontend_port]}[self.role]
        for port in ports:
            wait_for_port(port, process=self.process)
        return self

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def mailbox(self, address: str) -> list[bytes]:
        local, domain = address.split("@")
        new = self.var / "mailboxes" / domain / local.lower() / "new"
        if not new.exists():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]

    def all_delivered(self) -> list[bytes]:
        root = self.var / "mailboxes"
        return [p.read_bytes() for p in root.glob("*/*/new/*")]

    def queued(self) -> list[str]:
        """The ids of the messages in the queue, every worker's (one `<id>.eml` file each)."""
        q = self.var / "queue"
        return sorted(p.name[:-4] for directory in [q, *q.glob("worker-*")] for p in message_files(directory))

    def queue_files(self) -> list[str]:
        """Worker 0's queue files: messages and envelope files (not the spares and retired files kept for new messages)."""
        q = self.var / "queue"
        if not q.exists():
            return []
        return sorted(p.name for p in q.iterdir() if p.is_file() and (holds_message(p) if p.suffix == ".eml" else _size(p)))

    def wait_until(self, predicate, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; log:\n{self.log()[-3000:]}")


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
