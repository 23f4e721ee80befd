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

    def in_clear(self) -> "OutboundSecurity":
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


def connector_security(connector, certificate_dir: Path) -> OutboundSecurity:
    """
    A send connector's OutboundSecurity, with its client certificate read
    from the store. Start-up, reload and config check refuse a name the
    store does not hold (gateway/tls/check.py); one removed since is logged
    and the session goes on without it (the next hop's refusal defers).
    """
    security = connector.security()
    name = connector.tls_client_certificate_name
    if not name:
        return security
    found = CertificateStore(certificate_dir).load().find(parse_certificate_identifier(name))
    if found is None:
        log.error("send connector {connector}: no certificate in {directory} matches tls_client_certificate_name {name}",
                  connector=connector.name, directory=str(certificate_dir), name=name)
        return security
    return replace(security, client_certificate=found)
