"""Reloading: a good file replaces what new sessions see; a bad one is refused and logged."""

from twisted.logger import LogLevel, globalLogPublisher

from gateway.config import TOP_KEYS, Binding, load_config
from gateway.reload import LiveConfig
from gateway.smtpd.factory import BindingFactory

BASE = """
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Default Frontend"
role = "frontend"
bindings = ["127.0.0.1:2025"]
permission_groups = ["AnonymousUsers"]
[hub_pool]
hosts = ["127.0.0.1:2525"]
"""

RELAY = """
[[receive_connectors]]
name = "Anon Relay"
role = "frontend"
bindings = ["127.0.0.1:2025"]
remote_ip_ranges = ["127.0.0.2"]
permission_groups = ["AnonymousUsers"]
"""


def setup(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text(BASE)
    live = LiveConfig(load_config(path), path, ("frontend",))
    factory = BindingFactory(Binding("127.0.0.1", 2025), "frontend", (), None, None, None)
    live.attach(factory)
    return path, live, factory


def captured():
    events = []
    globalLogPublisher.addObserver(events.append)
    return events, lambda: globalLogPublisher.removeObserver(events.append)


def test_good_file_replaces_connectors_and_policy_for_new_sessions(tmp_path):
    path, live, factory = setup(tmp_path)
    old_policy, old_connectors = factory.policy, factory.connectors
    assert [c.name for c in factory.connectors] == ["Default Frontend"]
    path.write_text(BASE.replace('domain = "corp.example"', 'domain = "corp.example"\n[[accepted_domains]]\ndomain = "new.example"') + RELAY)
    assert live.reload()
    assert [c.name for c in factory.connectors] == ["Default Frontend", "Anon Relay"]
    assert "new.example" in factory.policy.accepted_domains
    # What an open session holds is untouched.
    assert "new.example" not in old_policy.accepted_domains and len(old_connectors) == 1


def test_bad_file_is_refused_and_every_error_logged(tmp_path):
    path, live, factory = setup(tmp_path)
    path.write_text(BASE.replace('bindings = ["127.0.0.1:2025"]', 'bindings = ["127.0.0.1:2025"]\nmax_recipients = 0') + "[oops]\n")
    events, done = captured()
    try:
        assert not live.reload()
    finally:
        done()
    errors = [e["problem"] for e in events if e.get("log_namespace") == "exgateway.reload" and e["log_level"] == LogLevel.error]
    assert errors == [
        f"{path}: oops: unknown key (known: {', '.join(sorted(TOP_KEYS))})",
        f'{path}: receive_connectors[0] ("Default Frontend").max_recipients: 0 is not a positive integer',
    ]
    assert [c.name for c in factory.connectors] == ["Default Frontend"]


def test_binding_change_is_refused_until_a_restart(tmp_path):
    """A new port cannot be opened by a reload: the whole file waits for a restart, the old one keeps serving."""
    path, live, factory = setup(tmp_path)
    path.write_text(BASE.replace("127.0.0.1:2025", "127.0.0.1:2026"))
    events, done = captured()
    try:
        assert not live.reload()
    finally:
        done()
    (event,) = [e for e in events if e.get("log_namespace") == "exgateway.reload"]
    assert (event["added"], event["removed"]) == ("127.0.0.1:2026 (frontend)", "127.0.0.1:2025 (frontend)")
    assert [c.name for c in factory.connectors] == ["Default Frontend"]


TLS = """
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:2025"]
remote_ip_ranges = ["127.0.0.3"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth"]
"""


def test_a_certificate_name_not_in_the_store_is_refused_with_the_reason(tmp_path):
    """The same check as start-up: a tls_certificate_name the store lacks refuses the file; the store is left as it was."""
    import datetime

    from twisted.internet.task import Clock

    from gateway.tls.provider import TLSProvider
    from gateway.tls.store import CertificateStore, make_self_signed

    path = tmp_path / "gw.toml"
    path.write_text(BASE)
    store = CertificateStore(tmp_path / "certs")
    store.directory.mkdir()
    held = store.write(make_self_signed("CN=mail.corp.example", ("mail.corp.example",), datetime.datetime.now(datetime.UTC)))
    live = LiveConfig(load_config(path), path, ("frontend",), tls=TLSProvider(store, Clock()))
    factory = BindingFactory(Binding("127.0.0.1", 2025), "frontend", (), None, None, None)
    live.attach(factory)
    missing = "0123456789ABCDEF0123456789ABCDEF01234567"
    path.write_text(BASE + TLS + f'tls_certificate_name = "{missing}"\n')
    events, done = captured()
    try:
        assert not live.reload()
    finally:
        done()
    reason = (f'{path}: receive_connectors[1] ("Client Frontend").tls_certificate_name: no certificate in {store.directory} '
              f"matches '{missing}' (it holds 1 certificate: `exgateway certificate list` shows them)")
    errors = [e["problem"] for e in events if e.get("log_namespace") == "exgateway.reload" and e["log_level"] == LogLevel.error]
    assert errors == [reason]
    assert live.outcome["errors"] == [reason] and not live.outcome["applied"]
    assert [c.name for c in factory.connectors] == ["Default Frontend"]
    # Named by thumbprint or by <I>issuer<S>subject, a certificate the store holds is applied.
    path.write_text(BASE + TLS + f'tls_certificate_name = "{held.thumbprint.lower()}"\n')
    assert live.reload()
    path.write_text(BASE + TLS + 'tls_certificate_name = "<I>CN=mail.corp.example<S>CN=mail.corp.example"\n')
    assert live.reload() and [c.name for c in factory.connectors] == ["Default Frontend", "Client Frontend"]
