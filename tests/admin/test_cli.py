"""`exgateway config check`: exit status and the report a user reads."""

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
        f"  {bad}: server.colour: unknown key (known: fqdn, name, var_dir)",
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
