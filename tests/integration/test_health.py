"""Health endpoints and drain on a running node: ready turns 503, new sessions get 421, the queue still empties."""

import json
import smtplib
import urllib.error
import urllib.request

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import exgateway_cli, free_port
from tests.integration.test_outbound import relay_gateway, send


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_drain_refuses_new_sessions_finishes_open_ones_and_keeps_delivering(tmp_path):
    health_port, hop_port = free_port(), free_port()
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop_port}", 'connection_timeout = "2s"',
                       f'[health]\nlisten = "127.0.0.1:{health_port}"\n', retry="1h")
    hop = None
    try:
        assert get(health_port, "/health/live") == (200, {"status": "live"})
        code, body = get(health_port, "/health/ready")
        # One process runs every role: its frontend hands mail to its own queue, so there is no hub to reach.
        assert code == 200 and set(body["checks"]) == {"not_draining", "queue", "back_pressure"}

        send(gw, ["far@outside.example"], b"Subject: queued before drain\r\n\r\nx\r\n")
        gw.wait_until(lambda: "deferred" in gw.log(), what="the message waiting for its next hop")
        def scrape():
            text = urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=10).read().decode()
            # The attempt is over once the queue shows the message waiting for its retry.
            return text if 'exgateway_queue_messages{queue="ISP",status="Retry"} 1.0' in text else None

        metrics = gw.wait_until(scrape, what="the queue gauge")
        assert 'exgateway_messages_accepted_total{connector="Anon Relay"} 1.0' in metrics
        assert 'exgateway_connections_total{connector="Anon Relay"} 1.0' in metrics
        assert 'exgateway_delivery_attempts_total{next_hop="ISP",outcome="pending"} 1.0' in metrics
        assert f'exgateway_next_hop_up{{address="127.0.0.1:{hop_port}"}} 0.0' in metrics
        assert 'exgateway_delivery_seconds_count{next_hop="ISP"} 1.0' in metrics
        assert "exgateway_certificate_not_after_seconds{" in metrics and 'subject="CN=mail.corp.example"' in metrics
        open_session = smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0))
        open_session.connect("127.0.0.1", gw.frontend_port)

        drained = exgateway_cli(gw.config, "drain")
        assert drained.returncode == 0 and "draining" in drained.stdout
        code, body = get(health_port, "/health/ready")
        assert code == 503 and body["failing"] == ["not_draining"]
        refused = smtplib.SMTP(timeout=10)
        assert refused.connect("127.0.0.1", gw.frontend_port) == (421, b"4.3.2 Service not active")

        # The session that was open before the drain finishes its message.
        open_session.sendmail("app@corp.example", ["late@outside.example"], b"Subject: in flight\r\n\r\ny\r\n")
        open_session.quit()

        hop = CaptureServer("127.0.0.1", hop_port)
        assert exgateway_cli(gw.config, "queue", "retry", "ISP").returncode == 0
        gw.wait_until(lambda: len(hop.transactions) == 2 and gw.queue_files() == [], what="the queue to empty while draining")

        assert exgateway_cli(gw.config, "undrain").returncode == 0
        assert get(health_port, "/health/ready")[0] == 200
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            assert s.noop()[0] == 250
    finally:
        gw.stop()
        if hop is not None:
            hop.stop()
