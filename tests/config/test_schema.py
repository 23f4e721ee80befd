"""
The schema (gateway/config/schema.py) is the one place a setting is
written: these tests hold the readers, the dataclasses, reload and the
sample file to it.
"""

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, Host, load_config, parse_config, schema
from gateway.config.settings import (
    AuthConfig,
    DNSConfig,
    HubPool,
    LDAPConfig,
    LimitsConfig,
    MailboxConfig,
    MessageTrackingConfig,
    ProtocolLogConfig,
    QueueConfig,
    ReceiveConnector,
    RecipientValidationConfig,
    SendConnector,
)
from gateway.reload import RESTART_ONLY

REPO = Path(__file__).resolve().parents[2]

# The key sets gateway/config.py listed by hand before the schema: every
# "unknown key (known: ...)" message must name the same keys as before.
KEYS_BEFORE = {
    "server": {"name", "fqdn", "var_dir", "workers", "shutdown_grace", "node_secret_file"},
    "accepted_domains": {"name", "domain", "type"},
    "receive_connectors": {
        "name", "role", "bindings", "remote_ip_ranges", "permission_groups", "auth_mechanisms",
        "banner", "fqdn", "max_message_size", "max_recipients", "connection_inactivity_timeout", "enabled",
        "permissions", "max_protocol_errors", "max_hop_count", "connection_timeout", "pipelining_enabled", "eight_bit_mime_enabled",
        "size_enabled", "enhanced_status_codes_enabled", "chunking_enabled",
        "max_inbound_connection", "max_inbound_connection_per_source", "message_rate_limit", "protocol_logging_level",
        "tarpit_interval", "max_header_size", "require_tls", "implicit_tls", "tls_certificate_name", "message_rate_source",
        "proxy_protocol", "trusted_proxies", "tls_cipher_profile", "tls_min_version", "bare_linefeeds",
    },
    "permissions": {"user", "extended_rights", "deny"},
    "hub_pool": {"hosts", "connect_timeout", "idle_connections", "protocol_logging_level", "reply_timeout"},
    "queue": {
        "directory", "retry_interval", "max_concurrent_deliveries", "transient_retry_attempts", "transient_retry_interval",
        "message_expiration_timeout", "delay_notification_timeout", "max_ndrs_per_sender_domain",
        "max_deliveries_per_next_hop",
        "greeting_timeout", "helo_timeout", "mail_timeout", "rcpt_timeout", "data_init_timeout", "data_done_timeout",
        "data_transfer_timeout",
    },
    "mailbox": {
        "delivery", "maildir", "next_hop", "protocol_logging_level", "max_mailboxes", "tls", "tls_domain", "tls_ca_file",
        "smart_host_auth", "auth_user", "auth_password", "auth_password_file",
    },
    "send_connectors": {
        "name", "address_spaces", "smart_hosts", "port", "cost", "enabled", "fqdn", "connection_timeout", "tls", "tls_domain",
        "tls_ca_file", "smart_host_auth", "auth_user", "auth_password", "max_message_size", "max_connections",
        "max_messages_per_connection", "protocol_logging_level", "tls_client_certificate_name",
        "oauth_token_url", "oauth_client_id", "oauth_scope", "oauth_client_secret_file", "oauth_client_certificate_name",
        "oauth_service_account_file", "oauth_ca_file", "source_senders", "source_receive_connectors", "source_users",
    },
    "dns": {"servers", "timeout"},
    "certificates": {"directory"},
    "authentication": {
        "backends", "users_file", "ldap", "failure_tarpit", "max_failures_per_connection", "max_failures_per_source",
        "max_failures_per_user", "failure_window", "lockout", "check_header_from", "credential_cache_ttl",
        "header_from",
    },
    "authentication.ldap": {"url", "base_dn", "bind_dn", "bind_password", "start_tls", "ca_file", "login_attributes", "sender_attributes",
                            "timeout"},
    "recipient_validation": {"sources", "list_file", "cache_ttl"},
    "protocol_log": {"directory", "max_file_size", "max_age", "max_directory_size"},
    "message_tracking": {"enabled", "directory", "max_file_size", "max_age", "max_directory_size"},
    "limits": {"ipv6_source_prefix", "junk_command_limit"},
    "admin": {"socket"},
    "health": {"listen", "frontend_listen", "min_free_space", "max_memory_percent"},
}
TOP_KEYS_BEFORE = {
    "server", "accepted_domains", "receive_connectors", "hub_pool", "queue", "mailbox", "protocol_log", "send_connectors",
    "certificates", "authentication", "dns", "message_tracking", "admin", "health", "limits", "networks", "recipient_validation",
    "rewrite", "dkim", "journal_rules",
}
# The Config attributes reload reported as waiting for a restart, before the schema said which.
RESTART_ONLY_BEFORE = {
    "hub_pool", "queue", "mailbox", "var_dir", "fqdn", "server_name", "certificate_dir", "dns", "limits", "protocol_log",
    "message_tracking", "admin_socket", "health_listen", "health_frontend_listen", "min_free_space", "max_memory_percent", "workers",
    "node_secret_file",
}
# Each table and the dataclass it fills (whose field defaults must be the schema's).
DATACLASSES = {
    "receive_connectors": ReceiveConnector, "hub_pool": HubPool, "queue": QueueConfig, "mailbox": MailboxConfig,
    "send_connectors": SendConnector, "dns": DNSConfig, "authentication": AuthConfig, "authentication.ldap": LDAPConfig,
    "recipient_validation": RecipientValidationConfig, "protocol_log": ProtocolLogConfig, "message_tracking": MessageTrackingConfig,
    "limits": LimitsConfig,
}

BASE = """
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Default"
role = "hub"
bindings = ["127.0.0.1:2525"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExternalAuthoritative"]
"""


def test_every_table_allows_the_keys_it_allowed_before():
    """The unknown-key check comes from the schema and names the same keys as the hand-written sets did."""
    assert {t.name: set(t.names) for t in schema.TABLES} == KEYS_BEFORE
    assert set(schema.TOP_KEYS) == TOP_KEYS_BEFORE


def test_reload_waits_for_a_restart_for_the_same_settings_as_before():
    """reload.py's restart-only list is derived from the schema's flags, and is what reload hard-coded before."""
    assert set(RESTART_ONLY) == RESTART_ONLY_BEFORE
    assert len(RESTART_ONLY) == len(set(RESTART_ONLY))


def test_a_table_that_is_one_config_attribute_is_restart_only_as_a_whole():
    """Reload compares a section as one value: a mix of restart-only and live keys in it would be reported wrongly."""
    for table in schema.TABLES:
        if table.attribute is not None:
            assert len({k.restart for k in table.keys}) == 1, table.name
        else:
            assert all(k.attribute for k in table.keys if k.restart), table.name


@pytest.mark.parametrize("table", schema.TABLES, ids=lambda t: t.name)
def test_every_key_is_documented_in_the_sample_and_has_a_doc_line(table):
    """An admin finds every setting in etc/exgateway.toml, and the schema says in one line what each is."""
    sample = (REPO / "etc" / "exgateway.toml").read_text()
    for key in table.keys:
        assert key.doc.strip() and "\n" not in key.doc, f"{table.name}.{key.name}"
        assert re.search(r"(?<![\w.])" + re.escape(key.name) + r"\b", sample), f"{table.name}.{key.name} is not in etc/exgateway.toml"


@pytest.mark.parametrize("name", sorted(DATACLASSES))
def test_dataclass_defaults_are_the_schema_defaults(name):
    """The dataclasses take their defaults from the schema (paths excepted: the schema holds the text, relative to var_dir)."""
    table = next(t for t in schema.TABLES if t.name == name)
    fields = {f.name: f for f in dataclasses.fields(DATACLASSES[name])}
    compared = 0
    for key in table.keys:
        f = fields.get(key.name)
        if f is None or key.default is schema.DERIVED or f.default is dataclasses.MISSING or "Path" in str(f.type):
            continue  # Read by code, no dataclass default, or a path (the schema's is the text, relative to var_dir or the file).
        expected = key.default if not key.many else tuple(key.default)
        assert f.default == expected, f"{name}.{key.name}: dataclass {f.default!r}, schema {key.default!r}"
        compared += 1
    assert compared or name == "hub_pool"


def test_config_defaults_of_top_level_settings_are_the_schema_defaults():
    """[server] and [health] keys fill Config attributes of their own; those defaults come from the schema too."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    compared = 0
    for table in (schema.SERVER, schema.HEALTH):
        for key in table.keys:
            f = fields[key.attribute]
            if key.default is schema.DERIVED or "Path" in str(f.type):
                continue
            assert f.default == key.default, f"{table.name}.{key.name}"
            compared += 1
    assert compared == 6


def test_unknown_key_names_file_key_and_the_known_keys(tmp_path):
    """A typo is an error naming the file, the key and what the table knows."""
    path = tmp_path / "gw.toml"
    path.write_text(BASE + "[queue]\nretry_intervall = \"5m\"\n[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"*\"]\ncots = 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert [str(p) for p in e.value.problems] == [
        f"{path}: queue.retry_intervall: unknown key (known: {', '.join(sorted(KEYS_BEFORE['queue']))})",
        f"{path}: send_connectors[0].cots: unknown key (known: {', '.join(sorted(KEYS_BEFORE['send_connectors']))})",
    ]


def test_mailbox_next_hop_and_send_connector_share_one_tls_and_auth_reader(tmp_path):
    """The same mistake in [mailbox] and in a send connector gets the same answer (mailbox also offers auth_password_file)."""
    text = BASE + """
[mailbox]
delivery = "smtp"
next_hop = "store.corp.example"
tls = "none"
tls_domain = "store.corp.example"
smart_host_auth = "BasicAuthRequireTLS"
auth_user = "gw@corp.example"
[[send_connectors]]
name = "Partner"
address_spaces = ["partner.example"]
smart_hosts = ["smart.partner.example"]
tls = "none"
tls_domain = "smart.partner.example"
smart_host_auth = "BasicAuthRequireTLS"
auth_user = "gw@corp.example"
"""
    path = tmp_path / "gw.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    found = [(p.key, p.reason) for p in e.value.problems]
    needs_tls = ("BasicAuthRequireTLS needs TLS: tls = \"opportunistic\" or \"required\" "
                 "(or smart_host_auth = \"BasicAuth\" to send credentials in clear)")
    checks = "tls_domain and tls_ca_file check certificates, which only tls = \"required\" does"
    assert found == [
        ("mailbox.auth_user", "smart_host_auth needs auth_user and auth_password (or auth_password_file)"),
        ("mailbox.tls", needs_tls),
        ("mailbox.tls", checks),
        ("send_connectors[0].auth_user", "smart_host_auth needs auth_user and auth_password"),
        ("send_connectors[0].tls", needs_tls),
        ("send_connectors[0].tls", checks),
    ]


def test_what_the_machine_tells_comes_from_the_host_given():
    """Parsing reads nothing of the machine itself: the FQDN and CPU count come in as a Host, asked only when needed."""
    import tomllib

    asked = []
    host = Host(fqdn=lambda: asked.append("fqdn") or "gw7.corp.example", cpus=lambda: asked.append("cpus") or 3)
    raw = tomllib.loads(BASE.replace('fqdn = "mail.corp.example"', 'workers = "auto"').replace('name = "EXSERVER"\n', "", 1))
    config = parse_config(raw, "gw.toml", host=host)
    assert (config.fqdn, config.server_name, config.workers) == ("gw7.corp.example", "GW7", 3)
    assert sorted(asked) == ["cpus", "fqdn"]
    asked.clear()
    config = parse_config(tomllib.loads(BASE), "gw.toml", host=host)
    assert (config.fqdn, config.workers, asked) == ("mail.corp.example", 1, [])


@pytest.mark.parametrize("cpus, shared, expected", [(8, False, 8), (8, True, 4), (2, True, 1), (1, True, 1), (3, True, 1)])
def test_auto_workers_share_the_cpus_between_a_hub_and_a_frontend_on_one_machine(cpus, shared, expected):
    """`[health] frontend_listen` says the file runs both roles here: each takes half the CPUs, not all of them."""
    import tomllib

    text = BASE.replace('fqdn = "mail.corp.example"', 'fqdn = "mail.corp.example"\nworkers = "auto"')
    if shared:
        text += '\n[health]\nlisten = "127.0.0.1:8025"\nfrontend_listen = "127.0.0.1:8026"\n'
    config = parse_config(tomllib.loads(text), "gw.toml", host=Host(fqdn=lambda: "gw.corp.example", cpus=lambda: cpus))
    assert config.workers == expected
    assert (config.health_frontend_listen is not None) == shared
