"""
TokenEndpoint with treq against a twisted.web token endpoint over TLS on
loopback, its certificate from a test CA that the HTTP client is given as
its trust root: the form arrives, the token comes back, a refusal's JSON is
decoded, and a server the trust root does not vouch for gets no secret.
"""

import json

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.web import resource, server

from gateway.deliver import oauth
from gateway.deliver.oauth import CachedTokenSource, TokenEndpoint, TokenError
from tests.testca import TestCA


class Token(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.forms = []
        self.answer = (200, {"access_token": "at-1", "expires_in": 3599, "token_type": "Bearer"})

    def render_POST(self, request):
        self.forms.append({k.decode(): v[0].decode() for k, v in request.args.items()})
        status, body = self.answer
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()


def _serve(tmp_path, ca: TestCA):
    key, cert, _ = ca.issue("localhost", dns=("localhost",))
    site_resource = Token()
    port = reactor.listenSSL(0, server.Site(site_resource), PrivateCertificate.loadPEM(key + cert).options(), interface="127.0.0.1")
    return site_resource, port, f"https://localhost:{port.getHost().port}/tenant/oauth2/v2.0/token"


@pytest_twisted.ensureDeferred
async def test_a_token_is_fetched_over_tls_and_an_error_is_decoded(tmp_path):
    ca = TestCA()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    (tmp_path / "secret").write_text("the-secret\n")
    token, port, url = _serve(tmp_path, ca)
    try:
        endpoint = TokenEndpoint(oauth.http_client(reactor, tmp_path / "ca.pem"), url,
                                 oauth.client_secret_grant("app-1", tmp_path / "secret", "https://outlook.office365.com/.default"),
                                 "client app-1")
        source = CachedTokenSource(endpoint, reactor)
        assert await source.get() == "at-1"
        assert token.forms == [{"grant_type": "client_credentials", "client_id": "app-1", "client_secret": "the-secret",
                                "scope": "https://outlook.office365.com/.default"}]
        token.answer = (401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        try:
            await endpoint()
        except TokenError as e:
            assert str(e) == f"token endpoint {url} refused for client app-1: invalid_client: AADSTS7000215: Invalid client secret provided."
        else:
            raise AssertionError("a 401 gave a token")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_endpoint_the_trust_root_does_not_vouch_for_gets_no_secret(tmp_path):
    (tmp_path / "other-ca.pem").write_bytes(TestCA("Someone Else").pem)
    (tmp_path / "secret").write_text("the-secret\n")
    token, port, url = _serve(tmp_path, TestCA())
    try:
        endpoint = TokenEndpoint(oauth.http_client(reactor, tmp_path / "other-ca.pem"), url,
                                 oauth.client_secret_grant("app-1", tmp_path / "secret", "s"))
        try:
            await endpoint()
        except TokenError as e:
            assert str(e).startswith(f"token endpoint {url} unreachable: ")
        else:
            raise AssertionError("an untrusted endpoint gave a token")
        assert token.forms == []
    finally:
        await port.stopListening()
