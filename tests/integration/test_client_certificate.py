"""
A send connector's tls_client_certificate_name: the hub presents that
certificate from its store during STARTTLS, and a next hop that requires a
client certificate (as a Microsoft 365 inbound connector identifying a
partner by subject does) sees the right subject.
"""

import ssl

import pytest
from cryptography import x509

from gateway.tls.store import dotnet_name
from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import exgateway_cli, free_port
from tests.integration.test_outbound import relay_gateway, send
from tests.testca import TestCA


def _next_hop(tmp_path, ca: TestCA) -> CaptureServer:
    """A next hop with a CA-issued server certificate that refuses a handshake without a client certificate from `ca`."""
    key, cert, _ = ca.issue("relay.partner.example", dns=("relay.partner.example",))
    (tmp_path / "hop.pem").write_bytes(key + cert)
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "hop.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(tmp_path / "ca.pem")
    return CaptureServer("127.0.0.1", free_port(), tls_context=context)


@pytest.mark.parametrize("tls", ["required", "opportunistic"])
def test_the_next_hop_sees_the_configured_client_certificate(tmp_path, tls):
    ca = TestCA()
    hop = _next_hop(tmp_path, ca)
    store = tmp_path / "gw" / "var" / "certs"
    store.mkdir(parents=True)
    # Two certificates in the store: the name picks the one the partner knows.
    for cn in ("relay.corp.example", "other.corp.example"):
        key, cert, _ = ca.issue(cn, org="Corp", client=True)
        (store / f"{cn}.pem").write_bytes(key + cert)
    checked = f'\ntls_domain = "relay.partner.example"\ntls_ca_file = "{tmp_path / "ca.pem"}"' if tls == "required" else ""
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "{tls}"{checked}
tls_client_certificate_name = "<I>CN=Test Root CA, O=Corp Test<S>CN=relay.corp.example, O=Corp"
""")
    try:
        send(gw, ["far@partner.example"], b"Subject: signed in\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery with a client certificate")
        (txn,) = hop.transactions
        shown = x509.load_der_x509_certificate(txn.client_certificate)
        assert (txn.tls, dotnet_name(shown.subject), dotnet_name(shown.issuer)) == (
            True, "CN=relay.corp.example, O=Corp", "CN=Test Root CA, O=Corp Test",
        )
    finally:
        gw.stop()
        hop.stop()


def test_without_a_client_certificate_the_next_hop_refuses_and_the_message_waits(tmp_path):
    ca = TestCA()
    hop = _next_hop(tmp_path, ca)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "required"
tls_domain = "relay.partner.example"
tls_ca_file = "{tmp_path / 'ca.pem'}"
""")
    try:
        send(gw, ["far@partner.example"], b"Subject: anonymous\r\n\r\nhello\r\n")
        gw.wait_until(lambda: "deferred" in gw.log(), what="the deferral")
        assert hop.transactions == [] and len(gw.queued()) == 1
    finally:
        gw.stop()
        hop.stop()


def test_config_check_names_a_client_certificate_the_store_does_not_hold(tmp_path):
    config = tmp_path / "exgateway.toml"
    (tmp_path / "var" / "certs").mkdir(parents=True)
    config.write_text(f"""
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
var_dir = "{tmp_path / 'var'}"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Default"
role = "hub"
bindings = ["127.0.0.1:{free_port()}"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExternalAuthoritative"]
[[send_connectors]]
name = "Microsoft 365"
address_spaces = ["*"]
smart_hosts = ["smtp.office365.com:587"]
tls = "required"
tls_client_certificate_name = "<I>CN=Test Root CA<S>CN=relay.corp.example"
""")
    result = exgateway_cli(config, "config", "check")
    assert result.returncode != 0
    assert (
        f'send_connectors[0] ("Microsoft 365").tls_client_certificate_name: no certificate in {tmp_path / "var" / "certs"} '
        "matches '<I>CN=Test Root CA<S>CN=relay.corp.example' (it is empty)"
    ) in result.stdout + result.stderr
