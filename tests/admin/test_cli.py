"""`exgateway config check`: exit status and the report a user reads."""

from pathlib import Path

from gateway.admin.cli import main
from gateway.config import default_config_path


def test_check_default_file(capsys):
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{default_config_path()}: OK\n")
    assert "receive connector" in out and "Default Frontend" in out and "corp.example" in out


def test_check_named_file_and_config_option_agree(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nfqdn = "x y"\ncolour = 1\n[[receive_connectors]]\nname = "A"\nrole = "frontend"\nbindings = ["1.2.3.4:0"]\n')
    assert main(["config", "check", str(bad)]) == 1
    first = capsys.readouterr().err
    assert main(["--config", str(bad), "config", "check"]) == 1
    assert capsys.readouterr().err == first
    assert first.splitlines() == [
        f"{bad}: 4 error(s)",
        f"  {bad}: server.colour: unknown key (known: fqdn, name, node_secret_file, shutdown_grace, var_dir, workers)",
        f"  {bad}: server.fqdn: 'x y' is not a valid host name",
        f"  {bad}: receive_connectors[0] (\"A\").bindings[0]: '1.2.3.4:0': '0' is not a valid port (1-65535)",
        f"  {bad}: hub_pool.hosts: frontend connectors need at least one hub to hand mail to",
    ]


def test_every_gateway_package_is_packaged():
    """setup.cfg lists packages by hand (for twisted.plugins): a new subpackage must be listed, or pip install breaks."""
    import configparser
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "gateway").rglob("__init__.py")}
    assert found <= listed, f"missing from setup.cfg: {sorted(found - listed)}"


def _config_file(tmp_path):
    cfg = tmp_path / "gw.toml"
    text = (default_config_path()).read_text().replace('var_dir = "var"', f'var_dir = "{tmp_path}/var"')
    cfg.write_text(text)
    return cfg


def test_user_add_list_passwd_remove(tmp_path, capsys, monkeypatch):
    """Passwords come from stdin (or a prompt), never argv; the file holds only argon2id hashes."""
    import io

    from gateway.auth.users import UsersFile

    cfg = _config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("first-pw\n"))
    assert main(["--config", str(cfg), "user", "add", "app@corp.example", "--send-as", "*@apps.corp.example", "--remote-ip", "10.0.0.0/8", "--password-stdin"]) == 0
    assert "may send as: app@corp.example, *@apps.corp.example" in capsys.readouterr().out
    text = (tmp_path / "var" / "users.toml").read_text()
    assert "first-pw" not in text and '$argon2id$' in text
    assert main(["--config", str(cfg), "user", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["app@corp.example", "app@corp.example,", "*@apps.corp.example", "10.0.0.0/8"]
    monkeypatch.setattr("sys.stdin", io.StringIO("second-pw\n"))
    assert main(["--config", str(cfg), "user", "add", "APP@corp.example", "--password-stdin"]) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("second-pw\n"))
    assert main(["--config", str(cfg), "user", "passwd", "app@corp.example", "--password-stdin"]) == 0
    from gateway.auth.users import HASHER

    record = UsersFile(tmp_path / "var" / "users.toml").load_strict()["app@corp.example"]
    assert HASHER.verify(record.password_hash, "second-pw")
    assert main(["--config", str(cfg), "user", "remove", "app@corp.example"]) == 0
    assert UsersFile(tmp_path / "var" / "users.toml").load_strict() == {}


def test_user_add_refuses_an_empty_password_and_has_no_password_option(tmp_path, capsys, monkeypatch):
    import io

    import pytest

    cfg = _config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["--config", str(cfg), "user", "add", "app", "--password-stdin"]) == 1
    assert "an empty password is not allowed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", str(cfg), "user", "add", "app", "--password", "x"])


def test_certificate_new_self_signed_import_and_list(tmp_path, capsys):
    cfg = _config_file(tmp_path)
    assert main(["--config", str(cfg), "certificate", "list"]) == 0
    assert "no certificates in" in capsys.readouterr().out
    assert main(["--config", str(cfg), "certificate", "new-self-signed", "--subject", "CN=relay.corp.example, O=Corp", "--san", "relay.corp.example"]) == 0
    made = capsys.readouterr().out
    thumbprint = made.split("Thumbprint ")[1].split()[0]
    pem = tmp_path / "var" / "certs" / f"{thumbprint}.pem"
    copy = tmp_path / "copy.pem"
    copy.write_bytes(pem.read_bytes())
    pem.unlink()
    assert main(["--config", str(cfg), "certificate", "import", str(copy)]) == 0
    assert f"as {pem}" in capsys.readouterr().out
    assert main(["--config", str(cfg), "certificate", "list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["Thumbprint", "Services", "Subject", "NotAfter", "Connectors"]
    assert rows[2].startswith(f"{thumbprint}  ....S..   CN=relay.corp.example, O=Corp  ")
    assert rows[2].endswith("Client Frontend, Client SMTPS")
    bad = tmp_path / "bad.pem"
    bad.write_text("nothing")
    assert main(["--config", str(cfg), "certificate", "import", str(bad)]) == 1
    assert capsys.readouterr().err == f"exgateway: {bad}: no PEM certificate in the file\n"


def test_queue_commands_say_when_the_hub_is_not_running(tmp_path, capsys):
    cfg = _config_file(tmp_path)
    assert main(["--config", str(cfg), "queue", "list"]) == 1
    err = capsys.readouterr().err
    assert err == (f"exgateway: no gateway answers at {tmp_path}/var/run/admin.sock (No such file or directory); "
                   f"is the gateway running with --config {cfg}?\n")


def test_the_queues_of_several_workers_show_as_one_node():
    from gateway.admin.queues import merge_queues

    row = {"Identity": "EX\\ISP", "Name": "ISP", "DeliveryType": "SmartHostConnectorDelivery", "NextHopDomain": "ISP"}
    worker0 = [dict(row, Status="Ready", MessageCount=2, LastError="", NextRetryTime=""),
               dict(row, Identity="EX\\Mailbox Delivery", Status="Ready", MessageCount=1, LastError="", NextRetryTime="")]
    worker1 = [dict(row, Status="Retry", MessageCount=3, LastError="451 4.4.0 unreachable", NextRetryTime="2026-11-27T05:10:00.000Z")]
    merged = merge_queues([worker0, worker1])
    assert [(q["Identity"], q["Status"], q["MessageCount"], q["LastError"], q["NextRetryTime"]) for q in merged] == [
        ("EX\\ISP", "Retry", 5, "451 4.4.0 unreachable", "2026-11-27T05:10:00.000Z"),
        ("EX\\Mailbox Delivery", "Ready", 1, "", ""),
    ]


def test_receive_connector_test_keeps_every_rcpt_option(capsys):
    """`--rcpt A --rcpt B` checks both recipients, as `--rcpt A B` does."""
    assert main(["receive-connector", "test", "--client-ip", "10.0.0.1", "--port", "25",
                 "--rcpt", "x@corp.example", "--rcpt", "y@other.example"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  RCPT TO:<x@corp.example>  ->  250 2.1.5 Recipient OK" in lines
    assert "  RCPT TO:<y@other.example>  ->  550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain" in lines


def test_a_queue_is_named_by_its_identity_as_queue_list_prints_it():
    """`queue retry 'LOCALHOST\\outside.example'` is the queue outside.example (the server part in any case)."""
    from gateway.admin.queues import queue_name

    assert queue_name("LOCALHOST\\outside.example", "LOCALHOST") == "outside.example"
    assert queue_name("localhost\\Mailbox Delivery", "LOCALHOST") == "Mailbox Delivery"
    assert queue_name("outside.example", "LOCALHOST") == "outside.example"
    assert queue_name("OTHER\\outside.example", "LOCALHOST") == "OTHER\\outside.example"


def test_the_last_column_of_a_table_is_never_cut(capsys):
    """A LastError cut at the column width ("failed: OSErr") says nothing: the last column keeps all of it."""
    from gateway.admin.table import print_table

    error = "451 4.4.0 connection to 192.0.2.1:25 failed: OSError: [Errno 113] No route to host"
    print_table(("Identity", "LastError"), [("X" * 70, error)], max_width=10)
    assert capsys.readouterr().out.splitlines()[2] == "X" * 10 + "  " + error


def test_config_init_writes_an_editable_copy_and_never_overwrites(tmp_path, capsys, monkeypatch):
    """The copy is the sample (var_dir beside it, or the one given), found from its directory; a second init refuses."""
    from gateway.config import load_config

    monkeypatch.delenv("EXGATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["config", "init"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'exgateway.toml'} (var_dir {tmp_path / 'var'})\n")
    assert (tmp_path / "exgateway.toml").read_text() == default_config_path().read_text()
    assert main(["config", "init", "."]) == 1
    assert capsys.readouterr().err == f"exgateway: {tmp_path / 'exgateway.toml'} exists; not overwritten (edit it, or remove it first)\n"
    assert main(["config", "init", "etc", "--var-dir", "/var/lib/exgateway"]) == 0
    assert f"export EXGATEWAY_CONFIG={tmp_path / 'etc' / 'exgateway.toml'}" in capsys.readouterr().out
    assert load_config(tmp_path / "etc" / "exgateway.toml").var_dir == Path("/var/lib/exgateway")


def test_user_set_changes_send_as_and_networks_and_keeps_the_password(tmp_path, capsys, monkeypatch):
    """`user set` replaces the lists given, keeps the others and the password; an option with no value clears its list."""
    import io

    from gateway.auth.users import UsersFile

    cfg = _config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert main(["--config", str(cfg), "user", "add", "scanner01@corp.example", "--remote-ip", "10.20.0.0/16", "--password-stdin"]) == 0
    before = UsersFile(tmp_path / "var" / "users.toml").load_strict()["scanner01@corp.example"]
    capsys.readouterr()
    assert main(["--config", str(cfg), "user", "set", "scanner01@corp.example", "--remote-ip", "127.0.0.1", "10.20.0.0/16",
                 "--send-as", "*@scan.corp.example"]) == 0
    assert capsys.readouterr().out == ("scanner01@corp.example: may send as scanner01@corp.example, *@scan.corp.example; "
                                       "from 127.0.0.1, 10.20.0.0/16\n")
    assert main(["--config", str(cfg), "user", "set", "SCANNER01@corp.example", "--remote-ip"]) == 0
    assert capsys.readouterr().out == "scanner01@corp.example: may send as scanner01@corp.example, *@scan.corp.example; from anywhere\n"
    after = UsersFile(tmp_path / "var" / "users.toml").load_strict()["scanner01@corp.example"]
    assert after.password_hash == before.password_hash
    assert main(["--config", str(cfg), "user", "set", "nobody@corp.example", "--remote-ip"]) == 1
    assert main(["--config", str(cfg), "user", "set", "scanner01@corp.example", "--remote-ip", "10.0.0.0/40"]) == 2


def test_user_add_without_a_terminal_says_how_to_pass_the_password(tmp_path, capsys, monkeypatch):
    """No prompt is possible (a script, CI): one line saying to use --password-stdin, no EOFError traceback, nothing added."""
    import io

    cfg = _config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["--config", str(cfg), "user", "add", "app@corp.example"]) == 1
    err = capsys.readouterr().err
    assert err == ("exgateway: no terminal to ask for the password; pass it on standard input with --password-stdin, "
                   "e.g. printf '%s\\n' \"$PASSWORD\" | exgateway user add NAME --password-stdin\n")
    assert not (tmp_path / "var" / "users.toml").exists()


def test_check_warns_about_an_externally_secured_connector_open_to_local_processes(tmp_path, capsys):
    """Still OK (exit 0), but the admin reads which ranges are trusted as gateway nodes and what to use instead."""
    path = tmp_path / "old.toml"
    path.write_text('[server]\nfqdn = "mail.corp.example"\n[[receive_connectors]]\nname = "Default"\nrole = "hub"\n'
                    'bindings = ["127.0.0.1:2525"]\nremote_ip_ranges = ["127.0.0.0/8"]\npermission_groups = ["ExchangeServers"]\n'
                    'auth_mechanisms = ["ExternalAuthoritative"]\n')
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{path}: OK"
    assert out.splitlines()[-1] == (
        "  warning: receive connector 'MAIL\\Default': ExternalAuthoritative trusts every client in 127.0.0.0/8 "
        "(16777216 addresses) as a gateway node (relay anywhere, any sender); list the nodes' own addresses one by one, "
        'or use auth_mechanisms = ["ExchangeServer"] (the node secret)'
    )


def test_with_the_packaged_sample_from_a_directory_without_var_the_commands_refuse(tmp_path, capsys, monkeypatch):
    """`user list` in the wrong directory must not say "no users" about a users file no gateway reads."""
    monkeypatch.delenv("EXGATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("gateway.configpath.SYSTEM_CONFIG", tmp_path / "none.toml")
    assert main(["user", "list"]) == 1
    assert capsys.readouterr().err.startswith(f"exgateway: {tmp_path / 'var'} does not exist: the packaged sample config puts var_dir")
    assert not (tmp_path / "var").exists()
    (tmp_path / "var").mkdir()
    assert main(["user", "list"]) == 0
