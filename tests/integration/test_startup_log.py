"""The process log of a real start, with two workers: what an admin reads, without Twisted's chatter."""

import smtplib
import urllib.request

from tests.integration.gatewayproc import Gateway, free_port


def test_the_start_says_what_listens_where_once_and_nothing_else_repeats_per_worker(tmp_path):
    health = free_port()
    gw = Gateway(tmp_path, workers=2, extra=f'[health]\nlisten = "127.0.0.1:{health}"\n')
    gw.start()
    try:
        gw.wait_until(lambda: (gw.var / "run" / "admin-worker-1.sock").exists(), what="worker 1 up")
        for _ in range(3):
            urllib.request.urlopen(f"http://127.0.0.1:{health}/health/ready", timeout=10).read()
            urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=10).read()
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=30) as s:
            s.ehlo()
            s.mail("app@devices.example")
            assert s.rcpt("bob@elsewhere.example")[0] == 550
        gw.wait_until(lambda: "refused" in gw.log(), what="the refusal logged")
    finally:
        gw.stop()
    log = gw.log()
    lines = [line.split(" ", 1)[1] for line in log.splitlines() if line]
    assert lines.count(
        f"[exgateway#info] exgateway all started: config {gw.config} (--config), var_dir {gw.var}, 2 worker(s), "
        "server EXSERVER (mail.corp.example)") == 1
    assert f"[exgateway#info] listening on 127.0.0.1:{gw.frontend_port} (frontend): Default Frontend (no TLS)" in lines
    assert f"[exgateway#info] listening on 127.0.0.1:{gw.hub_port} (hub): Default (no TLS)" in lines
    assert f"[exgateway#info] listening on 127.0.0.1:{health}: health (/health/live, /health/ready) and /metrics (HTTP)" in lines
    for chatter in ("Starting factory", "starting on", "Stopping factory", "resolv.conf", "GET /health", "GET /metrics",
                    "worker 1: [twisted"):
        assert chatter not in log, chatter
    assert log.count("starting up.") == 1
    refused = next(line for line in lines if "refused" in line and "5.7.54" in line)
    assert "{" not in refused and 'reason="' in refused
