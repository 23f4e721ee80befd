"""
Relay throughput, side by side: exgateway against Postfix, same loads, same run.

    python bench/relay.py [--rounds 3] [--topology all|split] [--quick]

Starts a private Postfix (relayhost: an smtp-sink) and exgateway on its
default config (mailbox next hop: another smtp-sink), then runs the same
Postfix `smtp-source` loads against both, alternating which goes first, for
several rounds: payloads 5 KB, 100 KB, 5 MB; 1, 20 and 100 sessions; one
connection per message. While a load runs, a probe sends one message every
50 ms on its own connection and times each whole SMTP transaction (connect
to the final 250). Prints one table of medians over the rounds, with the
exgateway / Postfix ratio per row. See bench/README.md.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import threading
import time
from pathlib import Path

from common import Exgateway, Postfix, RSSSampler, Sink, cpu_seconds, free_port, smtp_source, wait_delivered, workdir

PAYLOADS = {"5KB": 5 * 1024, "100KB": 100 * 1024, "5MB": 5 * 1024 * 1024}
SESSIONS = (1, 20, 100)
# Messages per load: enough for a few seconds each, bounded for the 5 MB rows.
# (The one-session rows ran 300 and 150 messages, about 1.5 s, until session
# 5: short enough for one noisy second here to decide a round.)
COUNTS = {
    ("5KB", 1): 1000, ("5KB", 20): 2000, ("5KB", 100): 2000,
    ("100KB", 1): 400, ("100KB", 20): 800, ("100KB", 100): 800,
    ("5MB", 1): 8, ("5MB", 20): 40, ("5MB", 100): 100,
}
QUICK = {k: max(v // 5, min(v, 20)) for k, v in COUNTS.items()}
DRAIN_TIMEOUT = 300.0


class Probe(threading.Thread):
    """Times one whole transaction every 50 ms while a load runs."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.times: list[float] = []
        self.sent = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        body = b"Subject: probe\r\n\r\n" + (b"p" * 98 + b"\r\n") * 10
        while not self._stop_event.is_set():
            t0 = time.perf_counter()
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                    s.sendmail("probe@devices.example", ["probe@corp.example"], body)
                self.times.append(time.perf_counter() - t0)
                self.sent += 1
            except (smtplib.SMTPException, OSError):
                pass
            self._stop_event.wait(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def run_load(server, sink: Sink, payload: str, sessions: int, count: int) -> dict:
    size = PAYLOADS[payload]
    before_msgs = sink.messages
    cpu0 = cpu_seconds(server.pids())
    sampler = RSSSampler(server.pids)
    sampler.start()
    probe = Probe(server.port)
    t0 = time.perf_counter()
    probe.start()
    smtp_source(server.port, sessions, count, size)
    accepted_s = time.perf_counter() - t0
    probe.stop()
    wait_delivered(server, sink, before_msgs + count + probe.sent, DRAIN_TIMEOUT)
    delivered_s = time.perf_counter() - t0
    cpu = cpu_seconds(server.pids()) - cpu0
    peak = sampler.stop()
    total = count + probe.sent
    # Rates count the smtp-source load only; the probe's small messages are
    # part of the work (and of the CPU per message) but not of the rate.
    return {
        "accepted": count / accepted_s,
        "delivered": count / delivered_s,
        "p50": percentile(probe.times, 50) * 1000,
        "p99": percentile(probe.times, 99) * 1000,
        "cpu_ms": cpu * 1000 / total,
        "rss_mb": peak / 1024,
    }


COLUMNS = [("accepted", "accepted/s", "{:.0f}"), ("delivered", "delivered/s", "{:.0f}"), ("p50", "p50 ms", "{:.1f}"),
           ("p99", "p99 ms", "{:.1f}"), ("cpu_ms", "CPU ms/msg", "{:.2f}"), ("rss_mb", "peak PSS MB", "{:.0f}")]


def median_row(samples: list[dict]) -> dict:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def table(results: dict, rounds: int) -> str:
    head = f"{'payload':>7} {'sess':>4} {'server':>9} " + " ".join(f"{label:>12}" for _, label, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for (payload, sessions), per_server in results.items():
        rows = {name: median_row(samples) for name, samples in per_server.items()}
        lines.extend(f"{payload:>7} {sessions:>4} {name:>9} " + " ".join(f"{fmt.format(rows[name][k]):>12}" for k, _, fmt in COLUMNS)
                     for name in ("postfix", "exgateway"))
        ratio = " ".join(f"{rows['exgateway'][k] / rows['postfix'][k] if rows['postfix'][k] else float('nan'):>11.2f}x" for k, _, _ in COLUMNS)
        lines.append(f"{payload:>7} {sessions:>4} {'ratio':>9} {ratio}")
    lines.append(f"(medians of {rounds} rounds; ratio = exgateway / Postfix: above 1 is better for msg/s, below 1 for ms and MB)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--topology", choices=("all", "split"), default="all",
                        help="exgateway as one process (the default) or frontend and hub processes")
    parser.add_argument("--workers", help='server.workers for exgateway (default: the default config\'s, "auto")')
    parser.add_argument("--quick", action="store_true", help="a fifth of the messages per load, for a smoke run")
    parser.add_argument("--only", help="run one payload, e.g. 5KB")
    args = parser.parse_args()
    counts = QUICK if args.quick else COUNTS

    base = workdir()
    pf_sink, gw_sink = Sink(free_port()), Sink(free_port())
    postfix = Postfix(base, free_port(), pf_sink.port)
    gateway = Exgateway(base, free_port(), gw_sink.port, args.topology, workers=args.workers)
    servers = {"postfix": (postfix, pf_sink), "exgateway": (gateway, gw_sink)}
    results: dict = {}
    try:
        postfix.start()
        gateway.start()
        for round_no in range(args.rounds):
            order = ["postfix", "exgateway"] if round_no % 2 == 0 else ["exgateway", "postfix"]
            for payload in PAYLOADS:
                if args.only and payload != args.only:
                    continue
                for sessions in SESSIONS:
                    for name in order:
                        server, sink = servers[name]
                        r = run_load(server, sink, payload, sessions, counts[(payload, sessions)])
                        results.setdefault((payload, sessions), {}).setdefault(name, []).append(r)
                        print(f"round {round_no + 1} {payload:>5} x{sessions:<3} {name:>9}: "
                              + ", ".join(f"{label} {fmt.format(r[k])}" for k, label, fmt in COLUMNS), flush=True)
        print()
        print(f"exgateway topology: {args.topology}, workers: {args.workers or 'auto'}; machine: {Path('/proc/cpuinfo').read_text().count('processor')} cores")
        print(table(results, args.rounds))
    finally:
        gateway.stop()
        postfix.stop()
        pf_sink.stop()
        gw_sink.stop()


if __name__ == "__main__":
    main()
