"""A tls_certificate_name the store does not hold is a configuration error (gateway/tls/check.py)."""

import datetime
import os

import pytest

from gateway import testing
from gateway.admin.cli import main
from gateway.tls.check import certificate_problems
from gateway.tls.store import CertificateStore, make_self_signed

NOW = datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
MISSING = "0123456789ABCDEF0123456789ABCDEF01234567"


def _config(tmp_path, **frontend):
    connectors = [
        {"name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:2025"], "permission_groups": ["AnonymousUsers"]},
        {"name": "Client Frontend", "role": "frontend", "bindings": ["127.0.0.1:2587"], "permission_groups": ["ExchangeUsers"],
         "auth_mechanisms": ["Tls", "BasicAuth"], **frontend},
        {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["127.0.0.0/8"],
         "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]},
    ]
    return testing.config(server={"name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": str(tmp_path / "var")},
                          receive_connectors=connectors)


def _store(config, *subjects):
    store = CertificateStore(config.certificate_dir)
    store.directory.mkdir(parents=True)
    held = [store.write(make_self_signed(f"CN={s}", (s,), NOW)) for s in subjects]
    return store, held


def test_names_the_connector_key_and_what_the_store_holds(tmp_path):
    config = _config(tmp_path, tls_certificate_name=MISSING)
    store, _ = _store(config, "mail.corp.example")
    (problem,) = certificate_problems(config)
    assert str(problem) == (
        f"test.toml: receive_connectors[1] (\"Client Frontend\").tls_certificate_name: no certificate in {store.directory} "
        f"matches '{MISSING}' (it holds 1 certificate: `exgateway certificate list` shows them)"
    )


def test_an_unreadable_file_in_the_store_is_named_in_the_reason(tmp_path):
    config = _config(tmp_path, tls_certificate_name="<I>CN=Corp CA<S>CN=relay.corp.example")
    store = CertificateStore(config.certificate_dir)
    store.directory.mkdir(parents=True)
    (store.directory / "relay.pem").write_text("not a certificate")
    (problem,) = certificate_problems(config)
    assert problem.reason == (
        f"no certificate in {store.directory} matches '<I>CN=Corp CA<S>CN=relay.corp.example' (it is empty); "
        f"unreadable there: {store.directory}/relay.pem: no PEM certificate in the file"
    )


@pytest.mark.parametrize("name", ["thumbprint", "thumbprint with spaces", "issuer and subject"])
def test_a_certificate_the_store_holds_passes(tmp_path, name):
    probe = _config(tmp_path)
    _, (held, _) = _store(probe, "relay.corp.example", "other.corp.example")
    identifier = {
        "thumbprint": held.thumbprint.lower(),
        "thumbprint with spaces": " ".join(held.thumbprint[i:i + 2] for i in range(0, 40, 2)),
        "issuer and subject": "<I>CN=relay.corp.example<S>CN=relay.corp.example",
    }[name]
    assert certificate_problems(_config(tmp_path, tls_certificate_name=identifier)) == []


def test_disabled_connectors_and_connectors_without_a_name_are_not_checked(tmp_path):
    """Without a name a connector picks by FQDN (start-up makes a self-signed one for an empty store)."""
    assert certificate_problems(_config(tmp_path)) == []
    assert certificate_problems(_config(tmp_path, tls_certificate_name=MISSING, enabled=False)) == []
    assert not (tmp_path / "var").exists()  # reading the store made nothing


def test_config_check_reads_the_store(tmp_path, capsys):
    config = _config(tmp_path, tls_certificate_name=MISSING)
    path = tmp_path / "gw.toml"
    path.write_text(f"""
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
var_dir = "{tmp_path / 'var'}"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:2587"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth"]
tls_certificate_name = "{MISSING}"
[hub_pool]
hosts = ["127.0.0.1:2525"]
""")
    assert main(["config", "check", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: 1 error(s)",
        (f"  {path}: receive_connectors[0] (\"Client Frontend\").tls_certificate_name: no certificate in "
         f"{config.certificate_dir} matches '{MISSING}' (it is empty)"),
    ]
    _, (held,) = _store(config, "mail.corp.example")
    os.rename(held.path, config.certificate_dir / f"{MISSING}.pem")
    # The file's name is not what identifies a certificate: its thumbprint is.
    assert main(["config", "check", str(path)]) == 1
    assert "(it holds 1 certificate: `exgateway certificate list` shows them)" in capsys.readouterr().err
    path.write_text(path.read_text().replace(MISSING, held.thumbprint))
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK\n")
