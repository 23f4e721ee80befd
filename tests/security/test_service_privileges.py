"""
Attack surface of the installed service (issue 16 item 19): the shipped
systemd unit ran twistd as root until it dropped privileges, with the whole
file system writable, every capability and every system call. It now runs
as the exgateway user with CAP_NET_BIND_SERVICE alone and systemd's
sandboxing, and `systemd-analyze security` must keep rating it OK or better.
"""

import configparser
import re
import subprocess

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import REPO


def _unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(REPO / "etc" / "exgateway.service")
    return unit


def test_the_systemd_unit_runs_the_plugin_as_the_service_user():
    """No root at any moment: the exgateway user, with the one capability that binds 25/465/587."""
    unit = _unit()
    service = unit["Service"]
    exec_start = service["ExecStart"]
    assert "twistd --nodaemon" in exec_start and "--uid" not in exec_start and "--gid" not in exec_start
    assert "exgateway --config /etc/exgateway/exgateway.toml" in exec_start
    assert (service["User"], service["Group"]) == ("exgateway", "exgateway")
    assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert (service["NoNewPrivileges"], service["ProtectSystem"], service["UMask"]) == ("true", "strict", "0027")
    assert service["ReadWritePaths"] == "/var/lib/exgateway" == service["WorkingDirectory"]
    assert service["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_rates_the_unit_ok_or_better():
    """Issue 16 item 19: `systemd-analyze security --offline=true` on the shipped unit says OK, SAFE or PERFECT."""
    result = subprocess.run(
        [require_tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(REPO / "etc" / "exgateway.service")],
        capture_output=True, text=True, env={"SYSTEMD_COLORS": "0", "PATH": "/usr/bin:/bin"},
    )
    found = re.search(r"Overall exposure level for exgateway\.service: ([0-9.]+) ([A-Z]+)", result.stdout)
    assert found, result.stdout + result.stderr
    score, level = found.groups()
    assert level in ("PERFECT", "SAFE", "OK") and float(score) < 2.0, found.group(0)
