"""
OAuth 2.0 access tokens for smart-host AUTH (XOAUTH2 / OAUTHBEARER).

Microsoft 365 and Google Workspace are switching Basic AUTH off; what they
accept instead is a bearer token from their token endpoint. A send
connector gets its tokens through one `TokenSource`:

- `CachedTokenSource` keeps the token until shortly before it lapses
  (`REFRESH_MARGIN`), so a busy connector asks the endpoint about once an
  hour, not once per connection; while a fetch is under way every other
  connection waits on the same one. A rejected token is dropped
  (`invalidate`) so the next `get` fetches a new one. A failed fetch (a
  revoked client, a wrong secret, an endpoint down) is remembered and
  answered from memory for a growing pause (`BACKOFF_*`): a queue of
  deferred messages retries against the cached error, not against the
  identity provider in a loop.
- `TokenEndpoint` does the HTTPS POST with treq and reads the answer: the
  token and its lifetime, or the endpoint's `error` and
  `error_description`, decoded, for the queue's LastError and the log.
- The grants: `client_secret_grant` (client credentials with a secret),
  `client_assertion_grant` (Microsoft's certificate credential: a JWT signed
  with the certificate's key) and `jwt_bearer_grant` (a Google service
  account acting as a user, RFC 7523).

Secrets (the client secret, the assertion, the token) are never logged: the
log names the endpoint, the client id and the error only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

log = Logger(namespace="exgateway.oauth")

# A token is used only while it has more than this left, so a session that
# starts with it does not outlive it; the next get fetches a fresh one.
REFRESH_MARGIN = 300.0
# After a failed fetch, the error is answered from memory this long, doubling to the maximum.
BACKOFF_FIRST = 30.0
BACKOFF_MAX = 900.0
# A token endpoint's answer is a few kilobytes; more is refused.
MAX_RESPONSE = 64 * 1024
FETCH_TIMEOUT = 30.0
# Lifetime assumed when the endpoint gives none (RFC 6749 makes expires_in optional).
DEFAULT_LIFETIME = 3600.0
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"


class TokenError(Exception):
    """
    No token: why, in words an admin can act on (the endpoint's error and
    error_description decoded, or what went wrong before an answer).
    """


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at})"


class ITokenSource(Interface):
    def get() -> Deferred:
        """Fire with a valid access token (str), or fail with TokenError."""

    def invalidate(token: str) -> None:
        """The server refused `token`: do not hand it out again."""


@implementer(ITokenSource)
class CachedTokenSource:
    """
    One per send connector, shared by all its connections. `fetch` is a
    callable returning a Deferred firing with (token, lifetime in seconds).
    """

    def __init__(self, fetch: Callable[[], Deferred], clock, margin: float = REFRESH_MARGIN,
                 backoff_first: float = BACKOFF_FIRST, backoff_max: float = BACKOFF_MAX) -> None:
        self.fetch = fetch
        self.clock = clock
        self.margin = margin
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.token: Token | None = None
        self.fetches = 0
        self._waiting: list[Deferred] | None = None
        self._error: Failure | None = None
        self._retry_at = 0.0
        self._backoff = 0.0

    def get(self) -> Deferred:
        now = self.clock.seconds()
        if self.token is not None and now < self.token.expires_at - self.margin:
            return succeed(self.token.value)
        if self._waiting is not None:
            d: Deferred = Deferred()
            self._waiting.append(d)
            return d
        if self._error is not None and now < self._retry_at:
            return fail(self._error)
        d = Deferred()
        self._waiting = [d]
        self.fetches += 1
        try:
            fetched = self.fetch()
        except Exception:
            fetched = fail()
        fetched.addCallbacks(self._fetched, self._failed)
        return d

    def _fetched(self, result) -> None:
        value, lifetime = result
        self.token = Token(value, self.clock.seconds() + lifetime)
        self._error, self._backoff = None, 0.0
        waiting, self._waiting = self._waiting or [], None
        for d in waiting:
            d.callback(value)

    def _failed(self, failure: Failure) -> None:
        if not failure.check(TokenError):
            failure = Failure(TokenError(f"token request failed: {failure.getErrorMessage() or type(failure.value).__name__}"))
        self._backoff = min(self.backoff_max, self._backoff * 2 or self.backoff_first)
        self._retry_at = self.clock.seconds() + self._backoff
        self._error = failure
        self.token = None
        log.error("OAuth token not obtained (next try in {backoff:.0f} s): {error}", backoff=self._backoff,
                  error=failure.getErrorMessage())
        waiting, self._waiting = self._waiting or [], None
        for d in waiting:
            d.errback(failure)

    def invalidate(self, token: str) -> None:
        if self.token is not None and self.token.value == token:
            self.token = None


# --- the token endpoint ------------------------------------------------------


def describe_error(status: int, body: bytes) -> str:
    """The endpoint's refusal in words: `error: error_description` from its JSON, else the status and a bounded text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        text = data["error"]
        description = data.get("error_description")
        if isinstance(description, str) and description:
            # Microsoft's descriptions carry trace and correlation ids on further lines.
            text += ": " + " ".join(description.split())
        return _printable(text, 1000)
    shown = _printable(body.decode("utf-8", "replace"), 200)
    return f"HTTP {status}" + (f": {shown}" if shown else "")


def _printable(text: str, limit: int) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:limit]


class TokenEndpoint:
    """
    POSTs a grant (a form) to the token URL with an injected treq
    HTTPClient; fires with (access_token, lifetime) or fails with TokenError.
    """

    def __init__(self, http_client, url: str, grant: Callable[[], dict], what: str = "") -> None:
        self.http = http_client
        self.url = url
        self.grant = grant
        # Names the client in errors (client id, service account): never a secret.
        self.what = what

    def __call__(self) -> Deferred:
        try:
            form = self.grant()
        except TokenError:
            return fail()
        d = self.http.post(self.url, data=form, headers={b"Accept": [b"application/json"]}, timeout=FETCH_TIMEOUT)
        d.addCallback(self._response)
        d.addErrback(self._unreachable)
        return d

    def _response(self, response) -> Deferred:
        from treq import collect

        parts: list[bytes] = []
        size = [0]

        def take(data: bytes) -> None:
            size[0] += len(data)
            if size[0] > MAX_RESPONSE:
                raise TokenError(f"token endpoint {self.url} sent more than {MAX_RESPONSE} bytes")
            parts.append(data)

        return collect(response, take).addCallback(lambda _: self._parse(response.code, b"".join(parts)))

    def _parse(self, status: int, body: bytes):
        who = f" for {self.what}" if self.what else ""
        if status != 200:
            raise TokenError(f"token endpoint {self.url} refused{who}: {describe_error(status, body)}")
        try:
            data = json.loads(body)
            token = data["access_token"]
            lifetime = float(data.get("expires_in", DEFAULT_LIFETIME))
        except (ValueError, KeyError, TypeError):
            raise TokenError(f"token endpoint {self.url} answered 200 without an access_token{who}") from None
        if not isinstance(token, str) or not token:
            raise TokenError(f"token endpoint {self.url} answered 200 without an access_token{who}")
        return token, lifetime

    def _unreachable(self, failure: Failure):
        if failure.check(TokenError):
            return failure
        raise TokenError(f"token endpoint {self.url} unreachable: {failure.getErrorMessage() or type(failure.value).__name__}")


class NoHTTP:
    """Stands in for the HTTP client when it could not be made: each request fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def post(self, *args, **kwargs) -> Deferred:
        return fail(TokenError(self.reason))


def http_client(reactor, ca_file: Path | None = None):
    """A treq HTTPClient checking the endpoint's certificate against `ca_file`, or the system's trust store."""
    from treq.client import HTTPClient
    from twisted.internet.ssl import Certificate
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

    policy = BrowserLikePolicyForHTTPS(Certificate.loadPEM(ca_file.read_bytes())) if ca_file else BrowserLikePolicyForHTTPS()
    return HTTPClient(Agent(reactor, contextFactory=policy))


# --- grants ------------------------------------------------------------------


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None


def client_secret_grant(client_id: str, secret_file: Path, scope: str) -> Callable[[], dict]:
    """The client-credentials grant with a secret (read from its file at each fetch, so a rotated secret is used)."""
    def grant() -> dict:
        secret = _read_secret(secret_file, "oauth_client_secret_file")
        return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope}
    return grant


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(header: dict, claims: dict, key) -> str:
    """A compact JWS: RS256 for an RSA key, ES256 for a P-256 key."""
    if isinstance(key, rsa.RSAPrivateKey):
        header = {"alg": "RS256", **header}
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        header = {"alg": "ES256", **header}
    else:
        raise TokenError("the signing key is neither RSA nor EC P-256")
    signing_input = _b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + _b64url(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input + "." + _b64url(signature)


# A client assertion is good for this long (Microsoft accepts up to 10 minutes).
ASSERTION_LIFETIME = 600


def client_assertion_grant(client_id: str, certificate, scope: str, token_url: str, clock) -> Callable[[], dict]:
    """
    Microsoft's certificate credential: the client-credentials grant with a
    JWT signed by the certificate's key (x5t: the SHA-1 thumbprint, which
    Entra ID matches against the certificate uploaded to the app).
    `certificate` is a StoredCertificate from the certificate store.
    """
    der = certificate.certificate.public_bytes(serialization.Encoding.DER)
    x5t = _b64url(hashlib.sha1(der).digest())

    def grant() -> dict:
        key = serialization.load_pem_private_key(certificate.key_pem, password=None)
        now = int(clock.seconds())
        claims = {"aud": token_url, "iss": client_id, "sub": client_id, "jti": str(uuid.UUID(bytes=os.urandom(16))),
                  "nbf": now, "iat": now, "exp": now + ASSERTION_LIFETIME}
        assertion = sign_jwt({"typ": "JWT", "x5t": x5t}, claims, key)
        return {"grant_type": "client_credentials", "client_id": client_id, "scope": scope,
                "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}
    return grant


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service account's JSON key that the grant needs."""

    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str

    def __repr__(self) -> str:
        return f"ServiceAccount({self.client_email!r})"


def read_service_account(path: Path) -> ServiceAccount:
    text = _read_secret(path, "oauth_service_account_file")
    try:
        data = json.loads(text)
        account = ServiceAccount(data["client_email"], data["private_key"], data.get("private_key_id", ""),
                                 data.get("token_uri", GOOGLE_TOKEN_URL))
    except (ValueError, KeyError, TypeError):
        raise TokenError(f"{path} is not a service account key (JSON with client_email and private_key)") from None
    return account


def jwt_bearer_grant(service_account_file: Path, subject: str, scope: str, token_url: str, clock) -> Callable[[], dict]:
    """
    Google's service account with domain-wide delegation (RFC 7523 JWT
    bearer grant): iss the service account, sub the user to act as.
    """
    def grant() -> dict:
        account = read_service_account(service_account_file)
        try:
            key = serialization.load_pem_private_key(account.private_key.encode(), password=None)
        except (ValueError, TypeError):
            raise TokenError(f"{service_account_file}: private_key is not a PEM private key") from None
        now = int(clock.seconds())
        claims = {"iss": account.client_email, "sub": subject, "scope": scope, "aud": token_url, "iat": now, "exp": now + 3600}
        header = {"typ": "JWT", "kid": account.private_key_id} if account.private_key_id else {"typ": "JWT"}
        return {"grant_type": JWT_BEARER, "assertion": sign_jwt(header, claims, key)}
    return grant


def credential_problems(config) -> list:
    """
    For `exgateway config check`: each OAuth credential file that cannot be
    read (or a service account key that is not one), named by connector
    key. At run time the same trouble defers mail with the same words.
    """
    from gateway.config.reader import ConfigProblem

    problems = []
    for index, c in enumerate(config.send_connectors):
        if not c.enabled:
            continue
        key = f'send_connectors[{index}] ("{c.name}").'
        try:
            if c.oauth_client_secret_file is not None and not _read_secret(c.oauth_client_secret_file, "oauth_client_secret_file"):
                raise TokenError(f"{c.oauth_client_secret_file} is empty")
            if c.oauth_service_account_file is not None:
                read_service_account(c.oauth_service_account_file)
        except TokenError as e:
            which = "oauth_client_secret_file" if c.oauth_client_secret_file is not None else "oauth_service_account_file"
            problems.append(ConfigProblem(str(config.path), key + which, str(e)))
    return problems
