"""
Authenticated submission, side by side: exgateway against Postfix + Dovecot SASL.

    python bench/submission.py [--rounds 3] [--clients 10] [--sessions 300] [--cache-off]
    python bench/submission.py --trees /path/to/tree-a /path/to/tree-b [...]

Starts exgateway on its default config (the submission connectors' 5
messages a minute per user lifted, as Postfix has no such limit) and a
private Postfix whose 587 (STARTTLS required) and 465 (implicit TLS)
services authenticate through a private Dovecot (`smtpd_sasl_type =
dovecot`; Dovecot's auth cache on, its default password scheme, a
passwd-file). Both have the same N accounts (one per client, as devices
each have their own), relay to an smtp-sink, and serve the same kind of
self-signed certificates: an RSA 2048 and an ECDSA P-256 one (exgateway's
default store; Postfix's smtpd_tls_eccert_file beside its RSA one), or with
`--rsa-only` RSA 2048 alone on both sides.

Each load is N client threads, each running sessions one after another
until the load's sessions are done: connect, (TLS), EHLO, (STARTTLS, EHLO),
(AUTH PLAIN), MAIL, RCPT, DATA with one 5 KB message, QUIT. Its latency is
the load's own: each session from connect to the 250 after the message, as
p50/p99. Rows: 587 and 465 without and with TLS session resumption (each
client keeps the previous session's TLS session and offers it), and the
anonymous port-25 sessions on the same instances, the anchor of the
"authenticated >= 0.5x anonymous" target, plain and with STARTTLS (what TLS
alone costs, without AUTH). The client is Python on the same machine: its
own CPU per session is printed, as on a 2-core machine it can be what
limits the rate; the servers' CPU per session is the steadier comparison. Loads alternate which server goes
first from round to round; the table is the median of the rounds.

With `--trees A B` the two servers are exgateway from two checkouts of this
project (e.g. main and a branch, `git worktree add`), each with its own
sink and the same accounts, side by side in one run instead of beside
Postfix: the ratio row is B / A.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import common
from common import Exgateway, Postfix, Sink, cpu_seconds, free_port, tool, wait_for_port, workdir

TEXT = (b"x" * 98 + b"\r\n") * 52


def body(sender: str) -> bytes:
    """5 KB with a From: the user may send as (exgateway's sample checks the header, as Exchange does)."""
    head = f"From: <{sender}>\r\nTo: <bench@corp.example>\r\nSubject: bench\r\n\r\n".encode()
    return (head + TEXT)[: 5 * 1024 - 2] + b"\r\n"
PASSWORD = "bench-password-1"
DRAIN_TIMEOUT = 120.0
KINDS = ("587", "587+resume", "465", "465+resume", "25 anonymous", "25 STARTTLS")


def user(n: int) -> str:
    return f"bench{n}@devices.example"


# --- the client ---------------------------------------------------------------------------


class Session:
    """One SMTP session over a blocking socket: short, explicit, the same for both servers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def wrap(self, ctx: ssl.SSLContext, session) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mail.corp.example", session=session)
        self.file = self.sock.makefile("rb")

    def reply(self, expect: int) -> None:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError(f"closed, expected {expect}")
            if line[3:4] != b"-":
                break
        if int(line[:3]) != expect:
            raise ConnectionError(f"expected {expect}, got {line!r}")

    def command(self, line: bytes, expect: int) -> None:
        self.sock.sendall(line + b"\r\n")
        self.reply(expect)


def one_session(kind: str, port: int, ctx: ssl.SSLContext, name: str, tls_session):
    """(seconds from connect to the 250 after the message, the TLS session to offer next, resumed?)."""
    t0 = time.perf_counter()
    s = Session(port)
    try:
        resume = tls_session if kind.endswith("+resume") else None
        if kind.startswith("465"):
            s.wrap(ctx, resume)
        s.reply(220)
        s.command(b"EHLO bench.devices.example", 250)
        if kind.startswith("587") or kind.endswith("STARTTLS"):
            s.command(b"STARTTLS", 220)
            s.wrap(ctx, resume)
            s.command(b"EHLO bench.devices.example", 250)
        if not kind.startswith("25"):
            token = base64.b64encode(b"\0" + name.encode() + b"\0" + PASSWORD.encode())
            s.command(b"AUTH PLAIN " + token, 235)
            sender = name
        else:
            sender = "app@devices.example"
        s.command(f"MAIL FROM:<{sender}>".encode(), 250)
        s.command(b"RCPT TO:<bench@corp.example>", 250)
        s.command(b"DATA", 354)
        s.sock.sendall(body(sender) + b".\r\n")
        s.reply(250)
        elapsed = time.perf_counter() - t0
        s.command(b"QUIT", 221)
        tls = isinstance(s.sock, ssl.SSLSocket)
        return elapsed, (s.sock.session if tls else None), (tls and s.sock.session_reused)
    finally:
        s.sock.close()


def run_load(kind: str, port: int, clients: int, sessions: int, ctx: ssl.SSLContext, pids) -> dict:
    lock = threading.Lock()
    left = [sessions]
    times: list[float] = []
    errors: list[str] = []
    resumed = [0]

    def client(n: int) -> None:
        tls_session = None
        while True:
            with lock:
                if left[0] <= 0 or len(errors) > 20:
                    return
                left[0] -= 1
            try:
                elapsed, tls_session, reused = one_session(kind, port, ctx, user(n), tls_session)
            except (OSError, ConnectionError, ssl.SSLError) as e:
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                times.append(elapsed)
                resumed[0] += bool(reused)

    cpu0 = cpu_seconds(pids())
    client0 = time.process_time()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pids()) - cpu0
    client_cpu = time.process_time() - client0
    if errors:
        print(f"  {kind}: {len(errors)} errors, first: {errors[0]}", flush=True)
    return {
        "rate": len(times) / wall,
        "p50": percentile(times, 50) * 1000,
        "p99": percentile(times, 99) * 1000,
        "cpu_ms": cpu * 1000 / max(1, len(times)),
        "resumed": resumed[0] / max(1, len(times)) * 100,
        "client_ms": client_cpu * 1000 / max(1, len(times)),
        "done": len(times),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


# --- the servers ---------------------------------------------------------------------------

DOVECOT_CONF = """
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 10M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 30 secs
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""

POSTFIX_SUBMISSION_MAIN = """
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_tls_cert_file = {d}/cert.pem
smtpd_tls_key_file = {d}/key.pem
{eccert}smtpd_tls_security_level = may
"""

POSTFIX_SUBMISSION_MASTER = """
127.0.0.1:{sub} inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{smtps} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
"""


class Dovecot:
    """A private Dovecot: only its auth service, on a socket in Postfix's queue directory."""

    def __init__(self, base: Path, socket_path: Path, clients: int) -> None:
        self.dir = base / "dovecot"
        for sub in ("run", "state"):
            (self.dir / sub).mkdir(parents=True)
        # Dovecot's default scheme: what `doveadm pw` makes without -s (CRYPT, bcrypt cost 5, on 2.3).
        hashed = subprocess.run([tool("doveadm"), "pw", "-p", PASSWORD], check=True, capture_output=True, text=True).stdout.strip()
        self.scheme = hashed.split("}")[0] + "}"
        (self.dir / "passwd").write_text("".join(f"{user(n)}:{hashed}\n" for n in range(clients)))
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(DOVECOT_CONF.format(d=self.dir, socket=socket_path))
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen([tool("dovecot"), "-F", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        from common import children

        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def postfix_with_submission(base: Path, sink_port: int, clients: int, rsa_only: bool = False):
    postfix = Postfix(base, free_port(), sink_port)
    d = postfix.dir
    eccert = ""
    for prefix, newkey in [("", ["-newkey", "rsa:2048"]), *([] if rsa_only else [("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])])]:
        subprocess.run([tool("openssl"), "req", "-x509", *newkey, "-nodes", "-days", "30", "-subj", "/CN=postfix.bench.example",
                        "-keyout", str(d / f"{prefix}key.pem"), "-out", str(d / f"{prefix}cert.pem")], check=True, capture_output=True)
    if not rsa_only:
        eccert = f"smtpd_tls_eccert_file = {d}/eccert.pem\nsmtpd_tls_eckey_file = {d}/eckey.pem\n"
    ports = {587: free_port(), 465: free_port()}
    main_cf = d / "etc" / "main.cf"
    main_cf.write_text(main_cf.read_text().replace("smtpd_tls_security_level = none\n", "") + POSTFIX_SUBMISSION_MAIN.format(d=d, eccert=eccert))
    master = d / "etc" / "master.cf"
    master.write_text(master.read_text() + POSTFIX_SUBMISSION_MASTER.format(sub=ports[587], smtps=ports[465]))
    postfix.submission_ports = ports
    dovecot = Dovecot(base, d / "queue" / "private" / "auth", clients)
    return postfix, dovecot


def exgateway_with_users(base: Path, sink_port: int, clients: int, cache_off: bool, rsa_only: bool = False) -> Exgateway:
    gateway = Exgateway(base, free_port(), sink_port)
    text = gateway.config.read_text()
    # Exchange's client-connector default (5 a minute per user) would be the bottleneck; Postfix has none.
    text = text.replace("message_rate_limit = 5\n", "")
    text = text.replace('message_rate_source = "User"\n', 'message_rate_source = "User"\nmax_inbound_connection_per_source = "unlimited"\n')
    if cache_off:
        text = text.replace("credential_cache_ttl = \"1h\"", "credential_cache_ttl = \"0s\"")
    gateway.config.write_text(text)
    (gateway.dir / "var").mkdir(exist_ok=True)
    env = {"PYTHONPATH": str(common.REPO), "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-c", "import sys; from gateway.admin.cli import main; sys.exit(main(sys.argv[1:]))", "--config", str(gateway.config)]
    if rsa_only:
        # An RSA-only certificate, as the default store held before ECDSA: the gateway finds it and makes none.
        subprocess.run([*cli, "certificate", "new-self-signed", "--subject", "CN=exgateway.bench.example"],
                       check=True, capture_output=True, env=env)
    for n in range(clients):
        subprocess.run(
            [sys.executable, "-c", "import sys; from gateway.admin.cli import main; sys.exit(main(sys.argv[1:]))",
             "--config", str(gateway.config), "user", "add", user(n), "--password-stdin"],
            input=PASSWORD + "\n", text=True, check=True, capture_output=True, env=env,
        )
    return gateway


# Logins per client per port before the first measured load (2 workers: a pair missed 1 time in 2**10).
WARMUP_LOGINS = 10
COLUMNS = [("rate", "sessions/s", "{:.1f}"), ("p50", "p50 ms", "{:.1f}"), ("p99", "p99 ms", "{:.1f}"),
           ("cpu_ms", "CPU ms/sess", "{:.2f}"), ("resumed", "resumed %", "{:.0f}"), ("client_ms", "client CPU ms", "{:.2f}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=300, help="sessions per load")
    parser.add_argument("--cache-off", action="store_true", help="exgateway with credential_cache_ttl = 0s (argon2 at every login)")
    parser.add_argument("--rsa-only", action="store_true", help="both servers with an RSA 2048 certificate alone (no ECDSA one)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of: " + ", ".join(KINDS))
    parser.add_argument("--trees", nargs=2, metavar=("A", "B"),
                        help="exgateway from two project checkouts side by side, no Postfix (ratio B / A)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",")]
    for k in (tool("dovecot"), tool("doveadm"), tool("openssl")):
        assert k

    base = workdir()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    def port_of(server, kind: str) -> int:
        return server.port if kind.startswith("25") else server.submission_ports[int(kind[:3])]

    # name -> (server, its sink, its processes, how it starts): the first is the ratio's reference.
    servers: dict = {}
    if args.trees:
        for n, tree in enumerate(args.trees):
            name = f"{'AB'[n]}:{Path(tree).name}"[:9]
            common.REPO = Path(tree).resolve()  # the config template, the CLI and the PYTHONPATH of this one
            sink = Sink(free_port())
            gateway = exgateway_with_users(base / f"tree{n}", sink.port, args.clients, args.cache_off, args.rsa_only)
            servers[name] = (gateway, sink, gateway.pids, lambda g=gateway, r=common.REPO: start_exgateway(g, r))
        scheme = "-"
    else:
        pf_sink, gw_sink = Sink(free_port()), Sink(free_port())
        postfix, dovecot = postfix_with_submission(base, pf_sink.port, args.clients, args.rsa_only)
        gateway = exgateway_with_users(base, gw_sink.port, args.clients, args.cache_off, args.rsa_only)
        servers["postfix"] = (postfix, pf_sink, lambda: postfix.pids() + dovecot.pids(), lambda: start_postfix(postfix, dovecot))
        servers["exgateway"] = (gateway, gw_sink, gateway.pids, lambda: start_exgateway(gateway, common.REPO))
        scheme = dovecot.scheme
    names = list(servers)
    results: dict = {}
    try:
        for _, _, _, start in servers.values():
            start()
        # Warm-up, not measured: the caches fill, as in a running site. exgateway's credential cache is per
        # worker process and the kernel spreads connections over the workers, so each client logs in
        # WARMUP_LOGINS times on each side: once was not enough (the first measured 587 load of a run
        # ran argon2 for the (account, worker) pairs the warm-up missed: 6.0 ms CPU a session, p99 418 ms).
        for server, _, pids, _ in servers.values():
            for kind in ("587", "465"):
                run_load(kind, port_of(server, kind), args.clients, args.clients * WARMUP_LOGINS, ctx, pids)
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for kind in kinds:
                for name in order:
                    server, sink, pids, _ = servers[name]
                    before = sink.messages
                    r = run_load(kind, port_of(server, kind), args.clients, args.sessions, ctx, pids)
                    drain = time.monotonic() + DRAIN_TIMEOUT
                    while sink.messages < before + r["done"] and time.monotonic() < drain:
                        time.sleep(0.02)
                    results.setdefault(kind, {}).setdefault(name, []).append(r)
                    print(f"round {round_no + 1} {kind:>13} {name:>9}: "
                          + ", ".join(f"{label} {fmt.format(r[k])}" for k, label, fmt in COLUMNS), flush=True)
        print()
        cores = Path("/proc/cpuinfo").read_text().count("processor")
        print(f"{args.clients} clients, {args.sessions} sessions a load, 5 KB each; {args.rounds} rounds; machine: {cores} cores; "
              f"exgateway credential cache {'off' if args.cache_off else 'on'}; Dovecot scheme {scheme}; "
              f"certificates {'RSA 2048' if args.rsa_only else 'RSA 2048 + ECDSA P-256'}")
        if args.trees:
            print("; ".join(f"{name} = {tree}" for name, tree in zip(names, args.trees, strict=True)))
        print(table(results, kinds, names))
    finally:
        for server, sink, _, _ in servers.values():
            server.stop()
            sink.stop()
        if not args.trees:
            dovecot.stop()
        shutil.rmtree(base, ignore_errors=True)


def start_postfix(postfix, dovecot) -> None:
    postfix.start()
    dovecot.start()
    deadline = time.monotonic() + 20
    while not (postfix.dir / "queue" / "private" / "auth").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("dovecot's auth socket did not appear")
        time.sleep(0.05)


def start_exgateway(gateway, repo: Path) -> None:
    common.REPO = repo  # Exgateway.start takes the PYTHONPATH from it
    gateway.start()
    for port in gateway.submission_ports.values():
        wait_for_port(port)


def table(results: dict, kinds: list[str], names: list[str]) -> str:
    """Medians per load and server; the ratio row is names[1] / names[0] (exgateway / Postfix+Dovecot, or tree B / tree A)."""
    head = f"{'load':>13} {'server':>9} " + " ".join(f"{label:>12}" for _, label, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    med = {kind: {name: {k: statistics.median(s[k] for s in samples) for k in samples[0]} for name, samples in per.items()}
           for kind, per in results.items()}
    ref, other = names
    for kind in kinds:
        rows = med[kind]
        lines.extend(f"{kind:>13} {name:>9} " + " ".join(f"{fmt.format(rows[name][k]):>12}" for k, _, fmt in COLUMNS)
                     for name in names)
        lines.append(f"{kind:>13} {'ratio':>9} " + " ".join(
            f"{rows[other][k] / rows[ref][k] if rows[ref][k] else float('nan'):>11.2f}x" for k, _, _ in COLUMNS))
    anon = "25 anonymous"
    if anon in med:
        for name in names[::-1]:
            parts = [f"{kind} {med[kind][name]['rate'] / med[anon][name]['rate']:.2f}x" for kind in kinds if kind != anon]
            lines.append(f"{name} authenticated / anonymous sessions/s (same instance): " + ", ".join(parts))
        for name in names[::-1]:
            parts = [f"{kind} {med[anon][name]['cpu_ms'] / med[kind][name]['cpu_ms']:.2f}x" for kind in kinds if kind != anon]
            lines.append(f"{name} anonymous / other CPU per session (what the rate ratio would be were the server the bottleneck): "
                         + ", ".join(parts))
    lines.append(f"(medians of the rounds; ratio = {other} / {ref}: above 1 is better for sessions/s, below 1 for ms)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
