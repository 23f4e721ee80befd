"""Repeated options keep every value (issue 18 item 14): `user add --send-as a --send-as b` (`--rcpt` twice: tests/admin/test_cli.py)."""

import io

from gateway.admin.cli import main
from tests.admin.test_cli import _config_file


def test_user_add_keeps_every_send_as_and_remote_ip_given_twice(tmp_path, capsys, monkeypatch):
    cfg = _config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw-1234567\n"))
    assert main(["--config", str(cfg), "user", "add", "app@corp.example", "--send-as", "*@apps.corp.example",
                 "--send-as", "alerts@corp.example", "reports@corp.example", "--remote-ip", "10.0.0.0/8", "--remote-ip", "192.0.2.7",
                 "--password-stdin"]) == 0
    assert "may send as: app@corp.example, *@apps.corp.example, alerts@corp.example, reports@corp.example" in capsys.readouterr().out
    assert main(["--config", str(cfg), "user", "list"]) == 0
    assert "10.0.0.0/8, 192.0.2.7" in capsys.readouterr().out

