"""
What a send connector asks of the next hop's session: TLS and smart-host AUTH.

TLS modes: "none" (never STARTTLS), "opportunistic" (STARTTLS when offered,
any certificate and any TLS version, and the same host again in clear if the
handshake fails: encryption against passive eavesdroppers, as Exchange does
by default and Postfix at its `may` level), "required" (STARTTLS or no delivery; the certificate must
chain to a trusted root and name the host, checked by service-identity, or
name `tls_domain` when one is pinned). A next hop that does not offer
STARTTLS to a "required" connector fails the connection: the message is
deferred, never sent in clear.

AUTH (Exchange's SmartHostAuthMechanism): "BasicAuthRequireTLS" (the
default when credentials are given) authenticates only inside TLS;
"BasicAuth" allows clear text where an admin explicitly wants it.

A client certificate (`tls_client_certificate_name`, from the certificate
store) is presented in the handshake to a next hop that asks for one:
Microsoft 365 inbound connectors and partners identify a sender by its
certificate's subject.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from pathlib import Path

from OpenSSL import crypto
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS, platformTrust
from twisted.logger import Logger

from gateway.deliver.opportunistic import OpportunisticTLS
from gateway.tls.certname import parse_certificate_identifier
from gateway.tls.store import CertificateStore, StoredCertificate

log = Logger(namespace="exgateway.deliver")


@dataclass(frozen=True)
class OutboundSecurity:
    tls: str = "opportunistic"
    tls_domain: str = ""
    ca_file: Path | None = None
    auth: str = "None"
    username: str = ""
    password: str = field(default="", repr=False)
    # The node secret (gateway/auth/node.py), for hubs that ask gateway nodes
    # to prove it: the frontend's hub pool sets it, send connectors never do.
    node: object | None = None
    # The certificate (with its key and chain) shown to a next hop that asks for one; None: none.
    client_certificate: StoredCertificate | None = field(default=None, repr=False)
    # XOAUTH2 / OAUTHBEARER: the connector's ITokenSource (gateway/deliver/oauth.py), shared by its connections.
    tokens: object = field(default=None, repr=False, compare=False)

    def tls_options(self, host_name: str):
        """Client TLS options for a next hop known by `host_name` (an MX or smart host name, or an IP)."""
        if self.tls != "required":
            # Opportunistic: any TLS version and certificate (gateway/deliver/opportunistic.py).
            return OpportunisticTLS(host_name, self.client_certificate)
        trust = Certificate.loadPEM(Path(self.ca_file).read_bytes()) if self.ca_file else platformTrust()
        if self.client_certificate is None:
            return optionsForClientTLS(self.tls_domain or host_name, trustRoot=trust)
        mine = PrivateCertificate.loadPEM(self.client_certificate.key_pem + self.client_certificate.chain_pem())
        chain = [crypto.X509.from_cryptography(c) for c in self.client_certificate.chain]
        return optionsForClientTLS(
            self.tls_domain or host_name, trustRoot=trust, clientCertificate=mine, extraCertificateOptions={"extraCertChain": chain},
        )

    def in_clear(self) -> OutboundSecurity:
        """The same settings without STARTTLS: the retry after an opportunistic handshake failed."""
        return replace(self, tls="none")

    def auth_line(self, offered: str) -> str | None:
        """The AUTH command for the offered mechanisms, PLAIN preferred; None if none fits."""
        mechanisms = offered.upper().split()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{self.username}\0{self.password}".encode()).decode()
            return f"AUTH PLAIN {token}"
        if "LOGIN" in mechanisms:
            return "AUTH LOGIN"
        return None


NO_SECURITY = OutboundSecurity(tls="none")


def _from_store(connector, certificate_dir: Path, key: str):
    name = getattr(connector, key)
    if not name:
        return None
    found = CertificateStore(certificate_dir).load().find(parse_certificate_identifier(name))
    if found is None:
        log.error("send connector {connector}: no certificate in {directory} matches {key} {name}",
                  connector=connector.name, directory=str(certificate_dir), key=key, name=name)
    return found


def connector_security(connector, certificate_dir: Path, reactor=None, http=None) -> OutboundSecurity:
    """
    A send connector's OutboundSecurity, with its client certificate read
    from the store and, for XOAUTH2 / OAUTHBEARER, its token source (one per
    connector: every connection shares its cache). Start-up, reload and
    config check refuse a certificate name the store does not hold
    (gateway/tls/check.py); one removed since is logged and the session goes
    on without it (the next hop's or the token endpoint's refusal defers).
    `http`: the treq HTTPClient for the token endpoint (tests inject one).
    """
    security = connector.security()
    found = _from_store(connector, certificate_dir, "tls_client_certificate_name")
    if found is not None:
        security = replace(security, client_certificate=found)
    if connector.smart_host_auth in ("XOAUTH2", "OAUTHBEARER"):
        security = replace(security, tokens=token_source(connector, certificate_dir, reactor, http))
    return security


def token_source(connector, certificate_dir: Path, reactor, http=None):
    """The CachedTokenSource for a connector's grant (client secret, certificate or service account)."""
    from gateway.deliver import oauth

    if http is None:
        try:
            http = oauth.http_client(reactor, connector.oauth_ca_file)
        except Exception as e:  # an unreadable or malformed oauth_ca_file: every fetch says so
            http = oauth.NoHTTP(f"cannot use oauth_ca_file {connector.oauth_ca_file}: {getattr(e, 'strerror', None) or e}")
    url, scope, client = connector.oauth_token_url, connector.oauth_scope, connector.oauth_client_id
    if connector.oauth_service_account_file is not None:
        path = connector.oauth_service_account_file
        try:
            account = oauth.read_service_account(path)
            url = url or account.token_uri
            client = client or account.client_email
        except oauth.TokenError:
            url = url or oauth.GOOGLE_TOKEN_URL  # the fetch reports the unreadable file
        grant = oauth.jwt_bearer_grant(path, connector.auth_user, scope or oauth.GOOGLE_SCOPE, url, reactor)
    elif connector.oauth_client_certificate_name:
        certificate = _from_store(connector, certificate_dir, "oauth_client_certificate_name")
        if certificate is None:
            def grant():
                raise oauth.TokenError(f"no certificate in {certificate_dir} matches oauth_client_certificate_name "
                                       f"{connector.oauth_client_certificate_name!r}")
        else:
            grant = oauth.client_assertion_grant(client, certificate, scope, url, reactor)
    else:
        grant = oauth.client_secret_grant(client, connector.oauth_client_secret_file, scope)
    endpoint = oauth.TokenEndpoint(http, url, grant, f"client {client}" if client else "")
    return oauth.CachedTokenSource(endpoint, reactor)
