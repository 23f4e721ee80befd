"""Connector settings for old and odd clients (issue 18): TLS profile, minimum version, bare line feeds."""

import pytest

from gateway import testing
from gateway.config import ConfigError
from tests.test_config import problems

HUB = {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["127.0.0.0/8"],
       "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]}


def printers(**settings):
    return {"name": "Printers", "role": "frontend", "bindings": ["0.0.0.0:587"], "remote_ip_ranges": ["10.20.0.0/24", "10.21.0.7"],
            "permission_groups": ["ExchangeUsers"], "auth_mechanisms": ["Tls", "BasicAuth"], **settings}


def test_defaults_are_the_modern_profile_and_normalised_line_feeds():
    (frontend, _hub) = testing.config().receive_connectors
    assert (frontend.tls_cipher_profile, frontend.tls_min_version, frontend.bare_linefeeds) == ("modern", "1.2", "normalize")


def test_a_scoped_connector_may_have_the_legacy_profile_which_starts_at_tls_1_0():
    c = testing.config(receive_connectors=[printers(tls_cipher_profile="legacy", bare_linefeeds="reject"), HUB]).receive_connectors[0]
    assert (c.tls_cipher_profile, c.tls_min_version, c.bare_linefeeds) == ("legacy", "1.0", "reject")
    c = testing.config(receive_connectors=[printers(tls_cipher_profile="legacy", tls_min_version="1.1"), HUB]).receive_connectors[0]
    assert c.tls_min_version == "1.1"
    # Raising the minimum weakens nothing: allowed anywhere.
    c = testing.config(receive_connectors=[dict(printers(tls_min_version="1.3"), remote_ip_ranges=["0.0.0.0/0"]), HUB]).receive_connectors[0]
    assert c.tls_min_version == "1.3"


@pytest.mark.parametrize("ranges", [None, ["0.0.0.0/0"], ["10.0.0.0/8", "::/0"], ["0.0.0.0-255.255.255.255"]])
def test_weakened_tls_is_refused_on_a_connector_open_to_everyone(ranges):
    raw = printers(tls_cipher_profile="legacy", tls_min_version="1.0")
    if ranges is None:
        del raw["remote_ip_ranges"]
    else:
        raw["remote_ip_ranges"] = ranges
    with pytest.raises(ConfigError) as e:
        testing.config(receive_connectors=[raw, HUB])
    assert [str(p) for p in e.value.problems] == [
        ('test.toml: receive_connectors[0] ("Printers").tls_cipher_profile: weakened TLS (legacy suites or TLS below 1.2) '
        "is allowed only on a connector whose remote_ip_ranges list the old devices' addresses; "
        "this one is open to every address (0.0.0.0/0 or ::/0)")
    ]


def test_bad_values_are_named_with_file_key_and_reason(tmp_path):
    from tests.test_config import BASE

    text = BASE.replace('permission_groups = ["AnonymousUsers"]', 'permission_groups = ["AnonymousUsers"]\nremote_ip_ranges = ["10.0.0.0/24"]\n'
                        'tls_cipher_profile = "old"\ntls_min_version = "1.1"\nbare_linefeeds = "strip"', 1)
    found = problems(tmp_path, text)
    assert found == [
        "receive_connectors[0] (\"Default Frontend\").tls_cipher_profile: 'old' is not one of modern, legacy",
        'receive_connectors[0] ("Default Frontend").tls_min_version: TLS 1.1 has none of the modern cipher suites: set tls_cipher_profile = "legacy" too',
        "receive_connectors[0] (\"Default Frontend\").bare_linefeeds: 'strip' is not one of normalize, reject",
    ]


def test_the_sample_default_frontend_on_25_offers_starttls_and_keeps_the_modern_profile():
    """Exchange's Default Frontend offers STARTTLS on 25 with the self-signed certificate; devices set to 'STARTTLS required' need it."""
    from gateway.config import load_config

    (frontend, *_) = load_config().receive_connectors
    assert (frontend.name, [str(b) for b in frontend.bindings]) == ("Default Frontend", ["0.0.0.0:25"])
    assert frontend.offers_starttls and not frontend.require_tls and not frontend.basic_auth
    assert (frontend.tls_cipher_profile, frontend.tls_min_version, frontend.bare_linefeeds) == ("modern", "1.2", "normalize")
