"""
Scale: many idle sessions, and one very large message.

    python bench/scale.py [--sessions 1000 10000] [--big-mb 30]

1. For each N, opens N SMTP connections to exgateway's port-25 connector and
   leaves them idle: reports how many got their 220 banner within one second
   of connecting, and the gateway's RSS growth per session.
2. Relays one message of --big-mb megabytes end to end (client -> frontend
   -> hub -> smtp-sink) and reports the growth of the gateway's peak RSS.

The open-files limit is raised for this process and for the gateway.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import smtplib
import socket
import time

from common import Exgateway, Sink, free_port, rss_kb, workdir

NOFILE = 65536


def raise_nofile() -> int:
    """Raise the soft open-files limit as far as the hard limit allows (a container may cap it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard) if hard != resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        target = hard
    return target


def rss_sum(gateway: Exgateway, key: str = "VmRSS") -> int:
    """Summed over the gateway's processes (one per worker)."""
    return sum(rss_kb(pid, key) for pid in gateway.pids())


def idle_sessions(gateway: Exgateway, n: int, batch: int = 500) -> dict:
    before = rss_sum(gateway)
    sel = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}
    banner_after: list[float] = []
    buffers: dict[socket.socket, bytes] = {}
    socks: list[socket.socket] = []
    deadline = time.monotonic() + 120
    opened = 0
    while (opened < n or started) and time.monotonic() < deadline:
        # Keep at most `batch` connections waiting for their banner at once.
        while opened < n and len(started) < batch:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", gateway.port))
            started[s] = time.monotonic()
            buffers[s] = b""
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
            opened += 1
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                data = s.recv(1024)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            buffers[s] += data
            if b"\r\n" in buffers[s] or not data:
                sel.unregister(s)
                if buffers[s].startswith(b"220 "):
                    banner_after.append(time.monotonic() - started[s])
                del started[s]
    time.sleep(0.5)
    after = rss_sum(gateway)
    for s in socks:
        s.close()
    sel.close()
    within = sum(1 for t in banner_after if t <= 1.0)
    return {
        "sessions": n,
        "bannered": len(banner_after),
        "within_1s": within,
        "max_banner_ms": max(banner_after) * 1000 if banner_after else float("nan"),
        "kb_per_session": (after - before) / n,
        "rss_before_mb": before / 1024,
        "rss_after_mb": after / 1024,
    }


def big_message(gateway: Exgateway, sink: Sink, megabytes: int) -> dict:
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=60) as s:
        s.sendmail("warm@devices.example", ["warm@corp.example"], b"Subject: warm-up\r\n\r\nx\r\n")
    while sink.messages < 1:
        time.sleep(0.05)
    before = rss_sum(gateway, "VmHWM")
    line = b"0123456789" * 7 + b"abcdef\r\n"
    body = b"Subject: big\r\n\r\n" + line * (megabytes * 1024 * 1024 // len(line))
    t0 = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=300) as s:
        s.sendmail("big@devices.example", ["big@corp.example"], body)
    deadline = time.monotonic() + 300
    while (sink.messages < 2 or not gateway.queue_empty()) and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    after = rss_sum(gateway, "VmHWM")
    return {"megabytes": megabytes, "seconds": elapsed, "peak_growth_mb": (after - before) / 1024, "peak_before_mb": before / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--big-mb", type=int, default=30)
    args = parser.parse_args()
    nofile = raise_nofile()
    print(f"open-files limit: {nofile}")

    for n in args.sessions:
        base = workdir()
        sink = Sink(free_port())
        gateway = Exgateway(base, free_port(), sink.port)
        try:
            gateway.start(nofile=nofile)
            time.sleep(0.5)
            r = idle_sessions(gateway, n)
            print(f"{r['sessions']:>6} idle sessions: {r['bannered']} got a banner, {r['within_1s']} within 1 s "
                  f"(slowest {r['max_banner_ms']:.0f} ms); RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB, "
                  f"{r['kb_per_session']:.1f} KB per session", flush=True)
        finally:
            gateway.stop()
            sink.stop()

    base = workdir()
    sink = Sink(free_port())
    gateway = Exgateway(base, free_port(), sink.port)
    try:
        gateway.start()
        r = big_message(gateway, sink, args.big_mb)
        print(f"{r['megabytes']} MB message relayed end to end in {r['seconds']:.1f} s; "
              f"peak RSS {r['peak_before_mb']:.0f} MB before, grew {r['peak_growth_mb']:.1f} MB")
    finally:
        gateway.stop()
        sink.stop()


if __name__ == "__main__":
    main()
