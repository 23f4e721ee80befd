"""
XOAUTH2 to a Microsoft-365-like smart host, end to end: a real gateway
process, a fake token endpoint over HTTPS (test CA, trusted through
oauth_ca_file) and a fake SMTP server that requires XOAUTH2 after STARTTLS
and checks the token. A good token delivers; a token the server no longer
takes is refreshed once; a revoked client is a clear deferral with the
decoded error in `exgateway queue list`, and the endpoint is not asked again
and again.
"""

import ssl

import pytest

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import exgateway_cli, free_port
from tests.integration.test_outbound import relay_gateway, send
from tests.integration.tokenserver import TokenServer
from tests.testca import TestCA

SECRET = "s3cr3t-value"


@pytest.fixture
def pki(tmp_path):
    ca = TestCA()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    key, cert, _ = ca.issue("localhost", dns=("localhost",), ips=("127.0.0.1",))
    (tmp_path / "server.pem").write_bytes(key + cert)
    return tmp_path


def _smart_host(pki, tokens) -> CaptureServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem")
    return CaptureServer("127.0.0.1", free_port(), tls_context=context, oauth_tokens=set(tokens))


def _gateway(pki, hop, endpoint, mechanism="XOAUTH2"):
    (pki / "client-secret").write_text(SECRET + "\n")
    return relay_gateway(pki / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "required"
tls_domain = "localhost"
tls_ca_file = "{pki / 'ca.pem'}"
smart_host_auth = "{mechanism}"
auth_user = "relay@corp.example"
oauth_token_url = "{endpoint.url}"
oauth_client_id = "11111111-2222-3333-4444-555555555555"
oauth_scope = "https://outlook.office365.com/.default"
oauth_client_secret_file = "{pki / 'client-secret'}"
oauth_ca_file = "{pki / 'ca.pem'}"
protocol_logging_level = "Verbose"
""")


def _send_logs(gw) -> str:
    return "".join(p.read_text() for p in (gw.var / "logs").rglob("SEND*.LOG")) if (gw.var / "logs").exists() else ""


def test_a_good_token_delivers_and_no_secret_reaches_a_log(pki):
    endpoint = TokenServer(pki / "server.pem", tokens=["eyJ0eXAi.good-token"])
    hop = _smart_host(pki, {"eyJ0eXAi.good-token"})
    gw = _gateway(pki, hop, endpoint)
    try:
        for i in range(3):
            send(gw, [f"user{i}@outside.example"], f"Subject: n{i}\r\n\r\nhello\r\n".encode())
        gw.wait_until(lambda: len(hop.transactions) == 3 and gw.queue_files() == [], what="three deliveries")
        assert {(t.tls, t.auth) for t in hop.transactions} == {(True, "relay@corp.example")}
        # One token for all: fetched once, cached for the connector's connections.
        assert len(endpoint.requests) == 1
        (form,) = endpoint.requests
        assert (form["_path"], form["grant_type"], form["client_id"], form["client_secret"]) == (
            "/contoso.onmicrosoft.com/oauth2/v2.0/token", "client_credentials", "11111111-2222-3333-4444-555555555555", SECRET)
        gw.wait_until(lambda: "AUTH XOAUTH2 ****" in _send_logs(gw), what="the masked AUTH in the send log")
        logs = gw.log() + _send_logs(gw)
        assert SECRET not in logs and "good-token" not in logs
    finally:
        gw.stop()
        hop.stop()
        endpoint.stop()


def test_a_refused_token_is_refreshed_once_and_the_message_delivered(pki):
    endpoint = TokenServer(pki / "server.pem", tokens=["stale-token", "fresh-token"])
    hop = _smart_host(pki, {"fresh-token"})
    gw = _gateway(pki, hop, endpoint, "OAUTHBEARER")
    try:
        send(gw, ["far@outside.example"], b"Subject: refresh\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery with the refreshed token")
        assert hop.tokens_seen == ["stale-token", "fresh-token"] and len(endpoint.requests) == 2
        assert "deferred" not in gw.log()
    finally:
        gw.stop()
        hop.stop()
        endpoint.stop()


def test_a_revoked_client_is_a_clear_deferral_not_a_loop(pki):
    endpoint = TokenServer(pki / "server.pem", revoked=True)
    hop = _smart_host(pki, {"never"})
    gw = _gateway(pki, hop, endpoint)
    try:
        send(gw, ["far@outside.example"], b"Subject: revoked\r\n\r\nhello\r\n")
        gw.wait_until(lambda: gw.log().count("deferred") >= 3, what="three attempts (retry every 1s)")
        # The queue retried each second; the token endpoint was asked once (the error is remembered for 30 s).
        assert len(endpoint.requests) == 1 and hop.tokens_seen == []
        listed = exgateway_cli(gw.config, "queue", "list")
        shown = " ".join(listed.stdout.split())
        assert "invalid_client: AADSTS7000222: The provided client secret keys for app" in shown, listed.stdout
        # The smart host answered: the login failed, not the host (not "unreachable", not marked down).
        assert "451 4.7.5 no OAuth token for 127.0.0.1: token endpoint https://localhost:" in shown and "unreachable" not in shown
        assert "unavailable" not in gw.log()
        assert "invalid_client: AADSTS7000222" in gw.log() and SECRET not in gw.log()
    finally:
        gw.stop()
        hop.stop()
        endpoint.stop()
