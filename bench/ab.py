"""
A/B of source trees (or Postfix) on one load: is a change worth keeping?

    python bench/ab.py /path/to/tree-a /path/to/tree-b [postfix] [--rounds 6] [--messages 400]
                       [--sessions 1] [--size 5120] [--workers 2] [--topology all|split]

Each tree is a checkout of this project (e.g. `git worktree add /tmp/base
HEAD` beside your working copy). Every tree's gateway (default config, next
hop an smtp-sink of its own) and Postfix, if named, run at once, idle while
another is measured; the rounds alternate the order. Prints delivered msg/s
per tree: the median, the best, and the ratio to the first tree; and the
median server CPU per message (user + system of the server's processes),
which usually moves less with the machine's load than the rate. With
`--timed` the load is bench/timedload.py instead of smtp-source, and each
tree's line adds the p50/p99 of the load's own transactions (connect to the
final reply) and of the wait from the end of the data to that reply
(medians over the rounds). Machine noise
here moves one-session rates by 20-40% between minutes, which is why the
trees run side by side instead of one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import common
import timedload


def start(tree: str, workers: str, topology: str):
    base = common.workdir()
    sink = common.Sink(common.free_port())
    if tree == "postfix":
        server = common.Postfix(base, common.free_port(), sink.port)
    else:
        # REPO decides the config template and the PYTHONPATH of the gateway it starts.
        common.REPO = Path(tree).resolve()
        server = common.Exgateway(base, common.free_port(), sink.port, topology, workers=workers)
    server.start()
    return server, sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", help="project checkouts, or `postfix`")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--size", type=int, default=5120)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--topology", choices=("all", "split"), default="all",
                        help="each tree as one process, or as --role hub + --role frontend")
    parser.add_argument("--timed", action="store_true",
                        help="time the load's own transactions (bench/timedload.py) instead of running smtp-source")
    args = parser.parse_args()
    running = []
    try:
        # One at a time, so that the finally stops those already started.
        for tree in args.trees:
            running.append((tree, *start(tree, args.workers, args.topology)))  # noqa: PERF401
        rates: dict[str, list[float]] = {tree: [] for tree in args.trees}
        cpu_ms: dict[str, list[float]] = {tree: [] for tree in args.trees}
        # Per round: p50 and p99 of the whole transaction, then of the end-of-data wait (ms).
        times: dict[str, list[tuple[float, float, float, float]]] = {tree: [] for tree in args.trees}
        for r in range(args.rounds):
            for tree, server, sink in running if r % 2 == 0 else running[::-1]:
                before = sink.messages
                cpu_before = common.cpu_seconds(server.pids())
                started = time.perf_counter()
                if args.timed:
                    whole, tail = timedload.run(server.port, args.sessions, args.messages, args.size)
                    times[tree].append(tuple(timedload.percentile(v, p) * 1000 for v in (whole, tail) for p in (50, 99)))
                else:
                    common.smtp_source(server.port, args.sessions, args.messages, args.size)
                common.wait_delivered(server, sink, before + args.messages, 120, tree)
                rates[tree].append(args.messages / (time.perf_counter() - started))
                cpu_ms[tree].append((common.cpu_seconds(server.pids()) - cpu_before) * 1000 / args.messages)
    finally:
        for _, server, sink in running:
            server.stop()
            sink.stop()
    reference = statistics.median(rates[args.trees[0]])
    cpu_reference = statistics.median(cpu_ms[args.trees[0]])
    for tree, values in rates.items():
        median = statistics.median(values)
        cpu = statistics.median(cpu_ms[tree])
        print(f"{tree:30} median {median:6.0f} msg/s  best {max(values):6.0f}  ratio {median / reference:.2f}  "
              f"CPU {cpu:.2f} ms/msg ({cpu / cpu_reference:.2f})  rounds {[round(v) for v in values]}")
        if times[tree]:
            p = [statistics.median(r[i] for r in times[tree]) for i in range(4)]
            ref = [statistics.median(r[i] for r in times[args.trees[0]]) for i in range(4)]
            print(f"{'':30} transaction p50 {p[0]:.1f} ms ({p[0] / ref[0]:.2f}) p99 {p[1]:.1f} ms ({p[1] / ref[1]:.2f}); "
                  f"end of data to reply p50 {p[2]:.1f} ms ({p[2] / ref[2]:.2f}) p99 {p[3]:.1f} ms ({p[3] / ref[3]:.2f})")


if __name__ == "__main__":
    main()
