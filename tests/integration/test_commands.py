"""The installed commands as a user runs them: `exgateway config check` and `twistd exgateway`."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.gatewayproc import REPO, TWISTD


def exgateway_command() -> list[str]:
    path = shutil.which("exgateway")
    if path:
        return [path]
    if os.environ.get("CI"):
        pytest.fail("the exgateway console script is not installed")
    return [sys.executable, "-m", "gateway.admin.cli"]


def test_config_check_of_the_sample_file_exits_0():
    result = subprocess.run([*exgateway_command(), "config", "check", str(REPO / "etc" / "exgateway.toml")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{REPO / 'etc' / 'exgateway.toml'}: OK")


def test_config_check_of_a_broken_file_names_each_error(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text((REPO / "etc" / "exgateway.toml").read_text().replace('bindings = ["0.0.0.0:25"]', 'bindings = ["0.0.0.0:70000"]').replace("[queue]", "[queue]\nretry = 5"))
    result = subprocess.run([*exgateway_command(), "config", "check", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{bad}: queue.retry: unknown key" in result.stderr
    assert f"{bad}: receive_connectors[0] (\"Default Frontend\").bindings[0]: '0.0.0.0:70000': '70000' is not a valid port (1-65535)" in result.stderr


def twistd(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", TWISTD, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_twistd_lists_the_plugin_and_its_options(tmp_path):
    assert "exgateway" in twistd("--help", cwd=tmp_path).stdout
    help_text = twistd("exgateway", "--help", cwd=tmp_path).stdout
    assert "--config=" in help_text and "--role=" in help_text


def test_twistd_refuses_a_broken_config_with_every_error(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text('[server]\nvar_dir = 3\n[[receive_connectors]]\nname = "X"\nrole = "frontend"\nbindings = ["0.0.0.0:25"]\nremote_ip_ranges = ["10.0.0.0/40"]\n')
    result = twistd("-n", "--pidfile=", "exgateway", "--config", str(bad), cwd=tmp_path)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    # One line per error, not twistd's Usage block.
    assert "Usage:" not in out
    assert all(line.startswith(f"exgateway: not started: {bad}: ") for line in out.splitlines())
    assert f"exgateway: not started: {bad}: server.var_dir: 3 is not a string" in out
    assert f"exgateway: not started: {bad}: receive_connectors[0] (\"X\").remote_ip_ranges[0]: '10.0.0.0/40' is not an IP address, CIDR block or a-b range" in out
    assert not (tmp_path / "var").exists()


def test_twistd_role_must_be_known(tmp_path):
    result = twistd("-n", "--pidfile=", "exgateway", "--role", "edge", cwd=tmp_path)
    assert result.returncode != 0 and "--role must be one of all, frontend, hub, not 'edge'" in result.stdout + result.stderr


def test_twistd_refuses_a_var_dir_it_cannot_create(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    cfg = tmp_path / "gw.toml"
    cfg.write_text((REPO / "etc" / "exgateway.toml").read_text().replace('var_dir = "var"', f'var_dir = "{blocker}/var"'))
    result = twistd("-n", "--pidfile=", "exgateway", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0
    assert f"{cfg}: server.var_dir: {blocker}/var cannot be created: {blocker} is not a directory" in result.stdout + result.stderr


def test_the_wheel_carries_every_module_and_the_default_config(tmp_path):
    """What `pip install .` installs: every gateway module, the plugin dropin, and etc/exgateway.toml."""
    import shutil
    import zipfile

    # Build from a clean copy: a stale build/ directory would hide a missing package.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", ".tox", ".git", "var", "__pycache__", ".pytest_cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("exgateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(REPO)) for p in (REPO / "gateway").rglob("*.py") if "etc" not in p.parts}
    assert expected - names == set()
    assert "twisted/plugins/exgateway_plugin.py" in names
    assert "gateway/etc/exgateway.toml" in names


def test_twistd_refuses_a_tls_connector_whose_certificate_is_missing(tmp_path):
    """A TlsCertificateName that matches nothing stops start-up naming the connector, not every STARTTLS later."""
    from tests.integration.gatewayproc import config_text, free_port

    cfg = tmp_path / "gw.toml"
    text = config_text(free_port(), free_port(), tmp_path / "var") + f"""
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:{free_port()}"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth"]
tls_certificate_name = "<I>CN=Corp CA<S>CN=relay.corp.example"
"""
    cfg.write_text(text)
    result = twistd("-n", "--pidfile=", "exgateway", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode != 0
    # The check `config check` and `reload` make (gateway/tls/check.py): file, key and reason.
    output = result.stdout + result.stderr
    assert "exgateway: the certificate store cannot serve this configuration:" in output
    assert (
        f"  {cfg}: receive_connectors[2] (\"Client Frontend\").tls_certificate_name: no certificate in "
        f"{tmp_path}/var/certs matches '<I>CN=Corp CA<S>CN=relay.corp.example' (it holds 1 certificate: "
        "`exgateway certificate list` shows them)"
    ) in output
    # The store was still given its self-signed default, which `certificate list` shows.
    listed = subprocess.run([*exgateway_command(), "--config", str(cfg), "certificate", "list"], capture_output=True, text=True)
    assert "CN=mail.corp.example" in listed.stdout and "......." in listed.stdout


def cli(*args, cwd, env=None, stdin=None):
    environ = {k: v for k, v in os.environ.items() if k != "EXGATEWAY_CONFIG"}
    environ.update(env or {}, PYTHONPATH=str(REPO))
    return subprocess.run(exgateway_command() + list(args), capture_output=True, text=True, cwd=cwd, env=environ, input=stdin, timeout=60)


def test_commands_find_the_running_gateway_through_its_config_from_any_directory(tmp_path):
    """
    From another directory, $EXGATEWAY_CONFIG (like --config) leads every
    command to the gateway; reload relays what the gateway said, its refusal
    with a non-zero exit; without the config, the commands say in one line
    that no gateway answers and exit 1, and change nothing.
    """
    import smtplib

    from tests.integration.gatewayproc import Gateway

    gw = Gateway(tmp_path / "gw").start()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"EXGATEWAY_CONFIG": str(gw.config)}
    try:
        # The process id where the config leads, for `kill -TERM $(cat var/run/exgateway.pid)`.
        pidfile = gw.var / "run" / "exgateway.pid"
        assert gw.wait_until(lambda: pidfile.exists() and pidfile.read_text(), what="the pid file") == f"{gw.pid}\n"
        listed = cli("queue", "list", cwd=elsewhere, env=env)
        assert (listed.returncode, listed.stdout) == (0, "(none)\n")
        reloaded = cli("reload", cwd=elsewhere, env=env)
        assert (reloaded.returncode, reloaded.stdout) == (0, f"reloaded {gw.config}\n")

        drained = cli("drain", cwd=elsewhere, env=env)
        assert drained.returncode == 0 and "no gateway running" not in drained.stdout
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10)
        assert refused.value.smtp_code == 421
        assert cli("undrain", cwd=elsewhere, env=env).returncode == 0
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            assert s.noop()[0] == 250

        other = elsewhere / "exgateway.toml"
        other.write_text(gw.config.read_text())
        wrong = cli("reload", cwd=elsewhere)
        assert (wrong.returncode, wrong.stderr) == (
            1, f"exgateway: not reloaded: the running gateway reads {gw.config}, not {other}; restart it to use this file\n")
        other.unlink()

        # A file the gateway refuses (not the command's own check): its refusal and reason are relayed.
        good = gw.config.read_text()
        gw.config.write_text(good.replace(f"127.0.0.1:{gw.frontend_port}", f"127.0.0.1:{gw.frontend_port}\", \"127.0.0.2:{gw.frontend_port}"))
        moved = cli("reload", cwd=elsewhere, env=env)
        assert moved.returncode == 1
        assert moved.stderr.splitlines() == [
            f"exgateway: the gateway refused {gw.config}; it keeps its running configuration:",
            (f"  listening addresses changed (added: 127.0.0.2:{gw.frontend_port} (frontend); removed: none); "
             "restart the gateway to apply this file"),
        ]
        gw.config.write_text(good)

        gw.config.write_text(gw.config.read_text().replace("[queue]", "[queue]\nretry = 5"))
        refused = cli("reload", "--config", str(gw.config), cwd=elsewhere)
        assert refused.returncode == 1
        # The file is checked here first, then the gateway's own refusal is relayed (same file, same errors).
        assert f"{gw.config}: queue.retry: unknown key" in refused.stderr

        for command in (["queue", "list"], ["drain"], ["reload"], ["queue", "retry", "x"]):
            result = cli(*command, cwd=elsewhere)
            assert result.returncode == 1, command
            assert result.stderr.count("\n") == 1 and result.stderr.startswith("exgateway: "), result.stderr
            assert "packaged sample" in result.stderr or command == ["reload"]
        assert not (elsewhere / "var").exists()
    finally:
        gw.stop()
    assert not (gw.var / "run" / "exgateway.pid").exists()
