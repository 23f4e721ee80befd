"""
What the SMTP Send Protocol Log writes where a send session carries secrets
or negotiates TLS (gateway/deliver/client.py writes the lines).

Credentials never reach the log: `AUTH PLAIN <token>` is written as
`AUTH PLAIN ****`, `AUTH XOAUTH2 <bearer token>` and `AUTH OAUTHBEARER ...`
as `AUTH XOAUTH2 ****` and `AUTH OAUTHBEARER ****`, each AUTH LOGIN answer
as `****` (the 334 prompts stay: they are the server's, and say which step
failed; after a refused token the 334 carries the server's JSON error). After STARTTLS the log
names the TLS version and cipher and the certificate the next hop showed,
as the receive side does for its own (smtpd/protocol.py).
"""

from __future__ import annotations

from gateway.tls.store import dotnet_name, thumbprint

MASK = "****"


def masked_auth(line: str) -> str:
    """An AUTH command as the log shows it: the mechanism, and `****` for an initial response."""
    verb, _, rest = line.partition(" ")
    mechanism, _, response = rest.partition(" ")
    if verb.upper() != "AUTH":
        return MASK
    return f"{verb} {mechanism} {MASK}" if response else f"{verb} {mechanism}"

def tls_events(connection) -> list[tuple[str, str]]:
    """(data, context) lines for a completed handshake on a pyOpenSSL connection."""
    events = []
    peer = connection.get_peer_certificate()
    if peer is not None:
        cert = peer.to_cryptography()
        events.append(("", "Received certificate"))
        events.append((dotnet_name(cert.subject), "Certificate subject"))
        events.append((dotnet_name(cert.issuer), "Certificate issuer name"))
        events.append((thumbprint(cert), "Certificate thumbprint"))
    events.append((f"{connection.get_protocol_version_name()} {connection.get_cipher_name()}", "TLS negotiation succeeded"))
    return events
