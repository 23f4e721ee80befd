"""
How much room the machine and the load tools leave a relay, in one run.

    python bench/ceiling.py [--rounds 2] [--only 5KB] [--topology all|split]

relay.py compares exgateway with Postfix, but both share the machine with
the load's own tools: smtp-source, which sends, and smtp-sink, which takes
the relayed copy. This runs the same loads three ways, alternating the
order from round to round: straight from smtp-source into an smtp-sink (no
relay: the tools' own ceiling), through Postfix, and through exgateway. For
each it measures the delivered rate and the CPU a message of the tools and
of the server. From those it reads what "2.0x Postfix" would take here:

- Where the loads are concurrent (20 and 100 sessions) the machine's CPU is
  what bounds them: at twice Postfix's rate a message may cost at most
  cores / rate of CPU in all, of which the tools take their share; what is
  left is the most a relay may spend on it ("server budget"). And no
  relay goes faster than the tools do without one: twice Postfix's rate is
  also shown as a share of the tools' own.
- Where one session sends one message after another, the rate is one over
  the time a message takes. What a relay adds is its time a message beyond
  the tools' own ("added ms"); twice Postfix's rate leaves the relay
  1 / (2 x Postfix's rate) minus the tools' own time ("added at 2x").
  Beside it, what one message's fsync takes on the work directory's file
  system ("fsync ms": a new file of the payload's size written and
  fsynced, the median of 20): a relay that answers 250 only once the
  message is on disk, as both do, spends at least that on each message.

No probe runs here (relay.py's probe is part of its loads): the loads are
smtp-source's alone. Same counts as relay.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

from common import Exgateway, Postfix, Sink, cpu_seconds, free_port, smtp_source, wait_delivered, workdir
from relay import COUNTS, DRAIN_TIMEOUT, PAYLOADS, QUICK, SESSIONS


class Straight:
    """No relay: smtp-source sends into the sink itself."""

    name = "tools"

    def __init__(self, sink: Sink) -> None:
        self.port = sink.port

    def pids(self) -> list[int]:
        return []

    def queue_empty(self) -> bool:
        return True


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_load(server, sink: Sink, payload: str, sessions: int, count: int) -> dict:
    """One smtp-source load; the delivered rate and the CPU a message of the server and of the tools."""
    before = sink.messages
    server0, source0, sink0 = cpu_seconds(server.pids()), children_cpu(), cpu_seconds([sink.process.pid])
    t0 = time.perf_counter()
    smtp_source(server.port, sessions, count, PAYLOADS[payload])
    wait_delivered(server, sink, before + count, DRAIN_TIMEOUT)
    elapsed = time.perf_counter() - t0
    tools = (children_cpu() - source0) + (cpu_seconds([sink.process.pid]) - sink0)
    return {
        "rate": count / elapsed,
        "server_ms": (cpu_seconds(server.pids()) - server0) * 1000 / count,
        "tools_ms": tools * 1000 / count,
    }


def fsync_ms(directory: Path, size: int, times: int = 20) -> float:
    """The median time to create, write and fsync a file of `size` bytes in `directory` (then removed)."""
    data = os.urandom(size)
    spent = []
    for n in range(times):
        path = directory / f"fsync-{n}"
        t0 = time.perf_counter()
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        spent.append(time.perf_counter() - t0)
        path.unlink()
    return statistics.median(spent) * 1000


def reading(rows: dict, sessions: int, cores: int, fsync: float) -> str:
    """The columns that say what twice Postfix's rate would take at this point."""
    tools, postfix, gateway = rows["tools"], rows["postfix"], rows["exgateway"]
    target = 2 * postfix["rate"]
    if sessions == 1:
        own = 1000 / tools["rate"]
        added = {name: 1000 / rows[name]["rate"] - own for name in ("postfix", "exgateway")}
        return (f"added ms/msg: postfix {added['postfix']:.2f}, exgateway {added['exgateway']:.2f}; "
                f"at 2x postfix {1000 / target - own:.2f}; fsync {fsync:.2f}")
    budget = cores * 1000 / target - gateway["tools_ms"]
    return (f"server CPU ms/msg: postfix {postfix['server_ms']:.2f}, exgateway {gateway['server_ms']:.2f}; "
            f"budget at 2x postfix {budget:.2f}; 2x postfix is {target / tools['rate']:.0%} of the tools' own rate")


def table(results: dict, rounds: int, cores: int, fsyncs: dict) -> str:
    head = f"{'payload':>7} {'sess':>4} {'tools/s':>9} {'postfix/s':>9} {'exgw/s':>9} {'2x pf':>7} {'tools ms':>8}  reading"
    lines = [head, "-" * 110]
    for (payload, sessions), per_server in results.items():
        rows = {name: {k: statistics.median(s[k] for s in samples) for k in samples[0]} for name, samples in per_server.items()}
        lines.append(
            f"{payload:>7} {sessions:>4} {rows['tools']['rate']:>9.0f} {rows['postfix']['rate']:>9.0f} "
            f"{rows['exgateway']['rate']:>9.0f} {2 * rows['postfix']['rate']:>7.0f} {rows['exgateway']['tools_ms']:>8.2f}  "
            + reading(rows, sessions, cores, fsyncs[payload])
        )
    lines.append(f"(medians of {rounds} rounds, delivered messages/s; tools ms = smtp-source + smtp-sink CPU a message "
                 f"during exgateway's load; {cores} cores)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--topology", choices=("all", "split"), default="all")
    parser.add_argument("--quick", action="store_true", help="a fifth of the messages per load, for a smoke run")
    parser.add_argument("--only", help="run one payload, e.g. 5KB")
    args = parser.parse_args()
    counts = QUICK if args.quick else COUNTS
    cores = len(os.sched_getaffinity(0))

    base = workdir()
    sinks = {name: Sink(free_port()) for name in ("tools", "postfix", "exgateway")}
    postfix = Postfix(base, free_port(), sinks["postfix"].port)
    gateway = Exgateway(base, free_port(), sinks["exgateway"].port, args.topology)
    servers = {"tools": Straight(sinks["tools"]), "postfix": postfix, "exgateway": gateway}
    results: dict = {}
    try:
        postfix.start()
        gateway.start()
        for round_no in range(args.rounds):
            order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
            for payload in PAYLOADS:
                if args.only and payload != args.only:
                    continue
                for sessions in SESSIONS:
                    for name in order:
                        r = run_load(servers[name], sinks[name], payload, sessions, counts[(payload, sessions)])
                        results.setdefault((payload, sessions), {}).setdefault(name, []).append(r)
                        print(f"round {round_no + 1} {payload:>5} x{sessions:<3} {name:>9}: rate {r['rate']:.0f}/s, "
                              f"server {r['server_ms']:.2f} ms, tools {r['tools_ms']:.2f} ms", flush=True)
        print()
        print(f"exgateway topology: {args.topology}; machine: {cores} cores")
        fsyncs = {payload: fsync_ms(base, size) for payload, size in PAYLOADS.items()}
        print(table(results, args.rounds, cores, fsyncs))
    finally:
        gateway.stop()
        postfix.stop()
        for sink in sinks.values():
            sink.stop()


if __name__ == "__main__":
    main()
