"""
TLS handshakes per second on a connector's server context, with and without
session resumption (issue 18 item 12).

    PYTHONPATH=. python bench/tls_resumption.py [--seconds 5] [--version 1.3|1.2]

Each handshake runs in memory between Python's ssl module (the client, a
real OpenSSL) and gateway.tls.context.ServerTLS, the object the listeners
use, with the gateway's self-signed RSA 2048 certificate; the client then
reads a 220 line, as an SMTP client reads the banner (TLS 1.3 tickets arrive
with it). "full" gives every connection a fresh client session; "resumed"
hands each connection the previous one's session, as a reconnecting device
does. The first rate counts both sides (one process); the second only the
time spent in the server's calls, which is what a gateway pays.
"""

from __future__ import annotations

import argparse
import datetime
import ssl
import tempfile
import time
from pathlib import Path

from OpenSSL import SSL
from twisted.internet.task import Clock

from gateway.tls.context import ServerTLS
from gateway.tls.store import CertificateStore, make_self_signed

SERVER_TIME = [0.0]


def handshake(server: ServerTLS, ctx: ssl.SSLContext, session=None):
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(c_in, c_out, server_hostname="mail.corp.example", session=session)
    t = time.perf_counter()
    conn = server.serverConnectionForTLS(None)
    conn.set_accept_state()
    SERVER_TIME[0] += time.perf_counter() - t
    while True:
        done = True
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            done = False
        data = c_out.read()
        t = time.perf_counter()
        if data:
            conn.bio_write(data)
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            pass
        if done:
            conn.send(b"220 ready\r\n")
        try:
            while True:
                c_in.write(conn.bio_read(65536))
        except SSL.WantReadError:
            pass
        SERVER_TIME[0] += time.perf_counter() - t
        if done:
            client.read(100)
            return client


def run(server: ServerTLS, ctx: ssl.SSLContext, resume: bool, seconds: float) -> tuple[float, float, int, int]:
    """(handshakes/s overall, handshakes per second of server time, handshakes, resumed)."""
    count = reused = 0
    SERVER_TIME[0] = 0.0
    session = None
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        client = handshake(server, ctx, session if resume else None)
        session = client.session
        count += 1
        reused += client.session_reused
    return count / (time.perf_counter() - start), count / SERVER_TIME[0], count, reused


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--version", choices=("1.2", "1.3"), default="1.3")
    args = ap.parse_args()
    now = datetime.datetime.now(datetime.UTC)
    cert = CertificateStore(Path(tempfile.mkdtemp(prefix="exgw-bench-"))).write(make_self_signed("CN=mail.corp.example", (), now))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if args.version == "1.3" else ssl.TLSVersion.TLSv1_2
    clock = Clock()
    rates, server_rates = {}, {}
    for label, server, resume in (
        ("full (resumption off)", ServerTLS(cert, clock, resumption=False), False),
        ("full (resumption on, new client)", ServerTLS(cert, clock), False),
        ("resumed", ServerTLS(cert, clock), True),
    ):
        rate, server_rate, count, reused = run(server, ctx, resume, args.seconds)
        rates[label], server_rates[label] = rate, server_rate
        print(f"TLS {args.version} {label:34} {rate:8.1f} handshakes/s, server side alone {server_rate:8.1f}/s "
              f"({count} handshakes, {reused} resumed)")
    full = "full (resumption off)"
    print(f"ratio resumed / full: {rates['resumed'] / rates[full]:.2f}x both sides, "
          f"{server_rates['resumed'] / server_rates[full]:.2f}x server side")


if __name__ == "__main__":
    main()
