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
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path

from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

from gateway.deliver.opportunistic import OpportunisticTLS


@dataclass(frozen=True)
class OutboundSecurity:
    tls: str = "opportunistic"
    tls_domain: str = ""
    ca_file: Path | None = None
    auth: str = "None"
    username: str = ""
    password: str = ""
    # The node secret (gateway/auth/node.py), for hubs that ask gateway nodes
    # to prove it: the frontend's hub pool sets it, send connectors never do.
    node: object | None = None

    def tls_options(self, host_name: str):
        """Client TLS options for a next hop known by `host_name` (an MX or smart host name, or an IP)."""
        if self.tls != "required":
            # Opportunistic: any TLS version and certificate (gateway/deliver/opportunistic.py).
            return OpportunisticTLS(host_name)
        trust = Certificate.loadPEM(Path(self.ca_file).read_bytes()) if self.ca_file else platformTrust()
        return optionsForClientTLS(self.tls_domain or host_name, trustRoot=trust)

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
