"""
Back pressure on a running node (issue 17, item 4): with less free space
than min_free_space (here a threshold no disk meets, rather than a disk
filled for the test), MAIL gets 452 4.3.1 before any body is sent,
/health/ready and the metric agree, and the state change is one log line.
"""

import json
import smtplib
import urllib.error
import urllib.request

from tests.integration.gatewayproc import free_port
from tests.integration.test_outbound import relay_gateway


def test_mail_is_refused_with_452_4_3_1_while_the_queue_disk_is_short(tmp_path):
    health_port = free_port()
    gw = relay_gateway(tmp_path / "gw", "127.0.0.1:9", "", f'[health]\nlisten = "127.0.0.1:{health_port}"\nmin_free_space = "1000000000GB"\n')
    try:
        for _ in range(3):
            with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
                s.connect("127.0.0.1", gw.frontend_port)
                s.ehlo()
                assert s.mail("app@corp.example") == (452, b"4.3.1 Insufficient system resources")
                # The session goes on.
                assert s.noop()[0] == 250
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health/ready", timeout=10)
            raise AssertionError("ready while refusing mail")
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
            assert e.code == 503 and "back_pressure" in body["failing"]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=10).read().decode()
        assert "exgateway_back_pressure 1.0" in metrics
        log = gw.log()
        assert log.count("new messages are refused (452 4.3.1)") == 1
        assert "Traceback" not in log
        assert gw.queued() == []
    finally:
        gw.stop()
