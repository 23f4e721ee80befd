"""
Token cache and grants (gateway/deliver/oauth.py), on task.Clock: a token is
reused until shortly before it lapses, one fetch serves every waiting
connection, a refused token is dropped, a failed fetch backs off.
"""

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from gateway.deliver import oauth
from gateway.deliver.oauth import CachedTokenSource, ITokenSource, TokenError, describe_error


class Endpoint:
    """A fetch the test answers by hand: each call gets a Deferred kept in `pending`."""

    def __init__(self):
        self.pending: list[Deferred] = []

    def __call__(self):
        d = Deferred()
        self.pending.append(d)
        return d


def _got(d):
    out = []
    d.addBoth(out.append)
    return out


def test_is_an_itokensource():
    assert verifyObject(ITokenSource, CachedTokenSource(Endpoint(), Clock()))


def test_concurrent_gets_share_one_fetch_and_the_token_is_cached_until_shortly_before_expiry():
    clock, endpoint = Clock(), Endpoint()
    source = CachedTokenSource(endpoint, clock, margin=300)
    first, second = _got(source.get()), _got(source.get())
    assert len(endpoint.pending) == 1 and first == second == []
    endpoint.pending.pop().callback(("tok-1", 3600))
    assert first == second == ["tok-1"]
    clock.advance(3600 - 300 - 1)
    assert _got(source.get()) == ["tok-1"] and endpoint.pending == []
    clock.advance(1)  # 300 s before it lapses: refreshed, not used to the last second
    third = _got(source.get())
    assert third == [] and len(endpoint.pending) == 1 and source.fetches == 2
    endpoint.pending.pop().callback(("tok-2", 3600))
    assert third == ["tok-2"]


def test_a_refused_token_is_dropped_and_the_next_get_fetches_once_for_everyone():
    clock, endpoint = Clock(), Endpoint()
    source = CachedTokenSource(endpoint, clock)
    source.get()
    endpoint.pending.pop().callback(("old", 3600))
    source.invalidate("old")
    source.invalidate("old")  # a second connection that saw the same refusal
    a, b = _got(source.get()), _got(source.get())
    assert len(endpoint.pending) == 1
    endpoint.pending.pop().callback(("new", 3600))
    source.invalidate("old")  # late: the new token stays
    assert a == b == ["new"] and _got(source.get()) == ["new"] and source.fetches == 2


def test_a_failed_fetch_is_answered_from_memory_with_a_growing_pause():
    clock, endpoint = Clock(), Endpoint()
    source = CachedTokenSource(endpoint, clock, backoff_first=30, backoff_max=100)
    waiting = _got(source.get())
    endpoint.pending.pop().errback(TokenError("token endpoint refused: invalid_client: AADSTS7000215: Invalid client secret provided."))
    assert waiting[0].getErrorMessage() == "token endpoint refused: invalid_client: AADSTS7000215: Invalid client secret provided."
    clock.advance(29)
    again = _got(source.get())
    assert endpoint.pending == [] and again[0].check(TokenError)  # no second request to the endpoint
    clock.advance(1)
    source.get()
    assert len(endpoint.pending) == 1
    endpoint.pending.pop().errback(TokenError("still revoked"))
    clock.advance(59)
    assert _got(source.get())[0].getErrorMessage() == "still revoked" and endpoint.pending == []
    clock.advance(1)
    source.get()
    endpoint.pending.pop().errback(TokenError("still revoked"))
    clock.advance(100 - 1)
    source.get().addErrback(lambda f: None)
    assert endpoint.pending == []  # capped at backoff_max
    clock.advance(1)
    d = _got(source.get())
    endpoint.pending.pop().callback(("fresh", 3600))
    assert d == ["fresh"] and source.fetches == 4


def test_an_unexpected_fetch_error_becomes_a_token_error():
    source = CachedTokenSource(lambda: fail(ConnectionRefusedError("refused")), Clock())
    (failure,) = _got(source.get())
    assert failure.check(TokenError) and failure.getErrorMessage() == "token request failed: refused"


@pytest.mark.parametrize("status, body, shown", [
    (400, b'{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app \'x\' are expired.\\r\\nTrace ID: 1"}',
     "invalid_client: AADSTS7000222: The provided client secret keys for app 'x' are expired. Trace ID: 1"),
    (401, b'{"error":"unauthorized_client"}', "unauthorized_client"),
    (503, b"<html>down\x07</html>", "HTTP 503: <html>down?</html>"),
    (500, b"", "HTTP 500"),
])
def test_the_endpoint_error_is_decoded(status, body, shown):
    assert describe_error(status, body) == shown


def test_a_200_without_a_token_and_a_good_answer():
    endpoint = oauth.TokenEndpoint(None, "https://login.example/token", dict, "client abc")
    assert endpoint._parse(200, b'{"access_token":"eyJ","expires_in":3599,"token_type":"Bearer"}') == ("eyJ", 3599.0)
    with pytest.raises(TokenError) as e:
        endpoint._parse(200, b'{"token_type":"Bearer"}')
    assert str(e.value) == "token endpoint https://login.example/token answered 200 without an access_token for client abc"


def _jwt_parts(jwt: str):
    def dec(part):
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    header, claims, signature = jwt.split(".")
    return json.loads(dec(header)), json.loads(dec(claims)), dec(signature), f"{header}.{claims}".encode()


def test_the_client_assertion_is_a_jwt_signed_with_the_certificate_key(tmp_path):
    """Microsoft's certificate credential: x5t the SHA-1 thumbprint, aud the token URL, iss = sub = client id, 10 minutes."""
    from gateway.tls.store import read_pem
    from tests.testca import TestCA

    key, cert, x509cert = TestCA().issue("relay.corp.example", client=True)
    stored = read_pem(tmp_path / "c.pem", key + cert)
    clock = Clock()
    clock.advance(1_800_000_000)
    url = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    form = oauth.client_assertion_grant("11111111-2222", stored, "https://outlook.office365.com/.default", url, clock)()
    assert {k: v for k, v in form.items() if k != "client_assertion"} == {
        "grant_type": "client_credentials", "client_id": "11111111-2222", "scope": "https://outlook.office365.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    header, claims, signature, signed = _jwt_parts(form["client_assertion"])
    thumb = base64.urlsafe_b64decode(header["x5t"] + "=")
    assert header["alg"] == "ES256" and thumb.hex().upper() == stored.thumbprint
    assert {k: claims[k] for k in ("aud", "iss", "sub", "nbf", "exp")} == {
        "aud": url, "iss": "11111111-2222", "sub": "11111111-2222", "nbf": 1_800_000_000, "exp": 1_800_000_600}
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    x509cert.public_key().verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))


def test_the_google_service_account_grant_acts_as_the_user(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "client_email": "relay@proj.iam.gserviceaccount.com",
                                "private_key": pem, "private_key_id": "k1", "token_uri": "https://oauth2.googleapis.com/token"}))
    clock = Clock()
    clock.advance(1000)
    form = oauth.jwt_bearer_grant(path, "scanner@corp.example", oauth.GOOGLE_SCOPE, "https://oauth2.googleapis.com/token", clock)()
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims, signature, signed = _jwt_parts(form["assertion"])
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert claims == {"iss": "relay@proj.iam.gserviceaccount.com", "sub": "scanner@corp.example", "scope": "https://mail.google.com/",
                      "aud": "https://oauth2.googleapis.com/token", "iat": 1000, "exp": 4600}
    key.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    assert "private_key" not in repr(oauth.read_service_account(path))


def test_an_unreadable_secret_file_is_a_token_error_naming_it(tmp_path):
    grant = oauth.client_secret_grant("abc", tmp_path / "missing", "scope")
    with pytest.raises(TokenError) as e:
        grant()
    assert str(e.value) == f"cannot read oauth_client_secret_file {tmp_path / 'missing'}: No such file or directory"
    (tmp_path / "secret").write_text("s3cr3t\n")
    assert oauth.client_secret_grant("abc", tmp_path / "secret", "scope")() == {
        "grant_type": "client_credentials", "client_id": "abc", "client_secret": "s3cr3t", "scope": "scope"}


def test_config_check_names_an_unreadable_secret_and_a_bad_service_account_key(tmp_path, capsys):
    from gateway.admin.cli import main

    (tmp_path / "sa.json").write_text('{"type": "service_account"}')
    config = tmp_path / "exgateway.toml"
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
bindings = ["127.0.0.1:2525"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExternalAuthoritative"]
[[send_connectors]]
name = "Microsoft 365"
address_spaces = ["*"]
smart_hosts = ["smtp.office365.com:587"]
smart_host_auth = "XOAUTH2"
auth_user = "relay@corp.example"
oauth_token_url = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
oauth_client_id = "app"
oauth_scope = "https://outlook.office365.com/.default"
oauth_client_secret_file = "m365.secret"
[[send_connectors]]
name = "Google"
address_spaces = ["g.example"]
smart_hosts = ["smtp.gmail.com:587"]
smart_host_auth = "XOAUTH2"
auth_user = "scanner@g.example"
oauth_service_account_file = "sa.json"
""")
    assert main(["config", "check", str(config)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == [
        (f'  {config}: send_connectors[0] ("Microsoft 365").oauth_client_secret_file: cannot read oauth_client_secret_file '
         f"{tmp_path / 'm365.secret'}: No such file or directory"),
        (f'  {config}: send_connectors[1] ("Google").oauth_service_account_file: {tmp_path / "sa.json"} is not a service account key '
         "(JSON with client_email and private_key)"),
    ]


def test_an_unreadable_oauth_ca_file_defers_with_the_reason(tmp_path):
    from gateway import testing
    from gateway.deliver.security import connector_security

    (connector,) = testing.config(send_connectors=[
        {"name": "M", "address_spaces": ["*"], "smart_hosts": ["smtp.office365.com:587"], "smart_host_auth": "XOAUTH2",
         "auth_user": "relay@corp.example", "oauth_token_url": "https://login.example/t", "oauth_client_id": "app", "oauth_scope": "s",
         "oauth_client_secret_file": str(tmp_path / "secret"), "oauth_ca_file": str(tmp_path / "missing-ca.pem")}]).send_connectors
    (tmp_path / "secret").write_text("x")
    security = connector_security(connector, tmp_path / "certs", Clock())
    (failure,) = _got(security.tokens.get())
    assert failure.getErrorMessage() == f"cannot use oauth_ca_file {tmp_path / 'missing-ca.pem'}: No such file or directory"
