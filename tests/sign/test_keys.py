"""The DKIM key store and `exgateway dkim new-key | list`."""

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.admin.cli import main
from gateway.sign.keys import KeyStore, record, txt_strings


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_new_key_is_private_and_its_record_holds_the_public_half(tmp_path, kind):
    """0600 file in 0700 directories whatever the umask; the TXT value is the key's public half."""
    old = os.umask(0)
    try:
        value = KeyStore(tmp_path / "dkim").new_key("Corp.Example", "s1", kind)
    finally:
        os.umask(old)
    path = tmp_path / "dkim" / "corp.example" / "s1.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = KeyStore(tmp_path / "dkim").load("corp.example", "s1")
    assert value.startswith(f"v=DKIM1; k={kind}; p=")
    public = base64.b64decode(value.split("p=")[1])
    if kind == "rsa":
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        assert len(public) == 294  # SubjectPublicKeyInfo of a 2048-bit key
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey) and len(public) == 32


def test_a_selector_keeps_its_key(tmp_path):
    """A second new-key under a used selector is refused: DNS still publishes the first key."""
    store = KeyStore(tmp_path)
    store.new_key("corp.example", "s1")
    before = store.path("corp.example", "s1").read_bytes()
    with pytest.raises(FileExistsError):
        store.new_key("corp.example", "s1")
    assert store.path("corp.example", "s1").read_bytes() == before


def test_long_records_are_split_into_255_character_strings():
    value = "v=DKIM1; k=rsa; p=" + "A" * 400
    assert [len(s) for s in txt_strings(value)] == [255, 163]
    assert record("corp.example", "s1", value) == f's1._domainkey.corp.example. IN TXT ( "{value[:255]}" "{value[255:]}" )'


def write_config(tmp_path, dkim=""):
    path = tmp_path / "exgateway.toml"
    path.write_text(
        '[server]\nname = "EXSERVER"\nfqdn = "mail.corp.example"\nvar_dir = "var"\n'
        '[[accepted_domains]]\ndomain = "corp.example"\n'
        '[[receive_connectors]]\nname = "Default"\nrole = "hub"\nbindings = ["127.0.0.1:2525"]\npermission_groups = ["ExchangeServers"]\n'
        + dkim
    )
    return path


def test_cli_new_key_prints_the_record_and_list_shows_which_is_active(tmp_path, capsys):
    path = write_config(tmp_path)
    assert main(["--config", str(path), "dkim", "new-key", "--domain", "corp.example", "--selector", "s202611"]) == 0
    assert main(["--config", str(path), "dkim", "new-key", "--domain", "corp.example", "--selector", "s202612", "--type", "ed25519"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path}/var/dkim/corp.example/s202611.key (mode 0600)" in out
    assert 's202611._domainkey.corp.example. IN TXT ( "v=DKIM1; k=rsa; p=' in out
    assert 's202612._domainkey.corp.example. IN TXT ( "v=DKIM1; k=ed25519; p=' in out
    write_config(tmp_path, '[dkim]\nselectors = { "corp.example" = "s202612" }\n')
    assert main(["--config", str(path), "dkim", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Domain", "Selector", "Type", "Active", "Created", "Age"]
    assert [line.split()[:4] for line in lines[2:]] == [
        ["corp.example", "s202611", "rsa", "no"], ["corp.example", "s202612", "ed25519", "yes"]
    ]
    assert main(["--config", str(path), "dkim", "new-key", "--domain", "corp.example", "--selector", "s202612"]) == 1
    assert "exists; a new key takes a new selector" in capsys.readouterr().err


def test_an_active_selector_without_a_key_is_a_config_error(tmp_path, capsys):
    path = write_config(tmp_path, '[dkim]\nselectors = { "corp.example" = "nokey" }\n')
    assert main(["--config", str(path), "config", "check"]) == 1
    err = capsys.readouterr()
    assert "dkim.selectors.corp.example: no key for selector 'nokey'" in err.out + err.err
    assert "exgateway dkim new-key --domain corp.example --selector nokey" in err.out + err.err
