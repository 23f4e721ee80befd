"""The deployment files in etc/: HAProxy accepts the example, the unit drops privileges, logrotate skips self-rotating logs."""

import configparser
import subprocess

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import REPO


def test_haproxy_accepts_the_example_configuration():
    result = subprocess.run([require_tool("haproxy"), "-c", "-f", str(REPO / "etc" / "haproxy.cfg.example")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "etc" / "haproxy.cfg.example").read_text()
    assert text.count("option httpchk GET /health/ready") == 3 and text.count("send-proxy-v2") == 3


def test_the_systemd_unit_runs_the_plugin_and_drops_privileges():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(REPO / "etc" / "exgateway.service")
    exec_start = unit["Service"]["ExecStart"]
    assert "twistd --nodaemon" in exec_start and "--uid=exgateway --gid=exgateway" in exec_start
    assert "exgateway --config /etc/exgateway/exgateway.toml" in exec_start
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_logrotate_entry_covers_only_the_twistd_log():
    text = (REPO / "etc" / "exgateway.logrotate").read_text()
    entries = [line for line in text.splitlines() if line.startswith("/")]
    assert entries == ["/var/log/exgateway/twistd.log {"] and "copytruncate" in text
