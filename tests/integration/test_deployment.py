"""The deployment files in etc/: HAProxy accepts the example, logrotate skips self-rotating logs (the unit: tests/security/test_service_privileges.py)."""

import subprocess

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import REPO


def test_haproxy_accepts_the_example_configuration():
    result = subprocess.run([require_tool("haproxy"), "-c", "-f", str(REPO / "etc" / "haproxy.cfg.example")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "etc" / "haproxy.cfg.example").read_text()
    assert text.count("option httpchk GET /health/ready") == 3 and text.count("send-proxy-v2") == 3


def test_logrotate_entry_covers_only_the_twistd_log():
    text = (REPO / "etc" / "exgateway.logrotate").read_text()
    entries = [line for line in text.splitlines() if line.startswith("/")]
    assert entries == ["/var/log/exgateway/twistd.log {"] and "copytruncate" in text
