"""
LDAP StartTLS injection: a man in the middle between the gateway and the
directory answers the StartTLS request and, in the same write, forges the
rest of the login in clear: the service account's bind, a search finding
the user, and the user's bind, all "successful". Were those read, a wrong
password would get 235. The gateway refuses the connection at the bytes
behind the StartTLS response and binds only inside a verified TLS session:
the client gets 454 4.7.0 and stays unauthenticated.
"""

import smtplib

import pytest
import pytest_twisted
from ldaptor.protocols import pureber, pureldap
from ldaptor.protocols.ldap.ldapserver import BaseLDAPServer
from twisted.cred.credentials import UsernamePassword

from gateway.auth.identity import DirectoryUnavailable
from gateway.auth.ldap import LDAPChecker
from gateway.config import LDAPConfig
from tests.integration.gatewayproc import Gateway, free_port, wait_for_port
from tests.security.hostile import ScriptedPeer

BASE_DN = "DC=corp,DC=example"


def read_request(peer):
    """One LDAP request from the gateway, decoded as a server would."""
    buffer = b""
    while True:
        try:
            message, _ = pureber.berDecodeObject(BaseLDAPServer.berdecoder, buffer)
        except pureber.BERExceptionInsufficientData:
            message = None
        if message is not None:
            return message
        chunk = peer.conn.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed")
        buffer += chunk
        peer.peer.received[peer.index] += chunk


def forged_login(first_id: int) -> bytes:
    """StartTLS accepted, then service bind ok, one entry found, the user's bind ok: one write, in clear."""
    replies = [
        (first_id, pureldap.LDAPExtendedResponse(resultCode=0, responseName=pureldap.LDAPStartTLSResponse.oid)),
        (first_id + 1, pureldap.LDAPBindResponse(resultCode=0)),
        (first_id + 2, pureldap.LDAPSearchResultEntry(
            objectName="CN=ceo,OU=Staff,DC=corp,DC=example", attributes=[("mail", ["ceo@corp.example"])],
        )),
        (first_id + 2, pureldap.LDAPSearchResultDone(resultCode=0)),
        (first_id + 3, pureldap.LDAPBindResponse(resultCode=0)),
    ]
    return b"".join(pureldap.LDAPMessage(value, id=i).toWire() for i, value in replies)


class InjectingDirectory:
    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, peer) -> None:
        request = read_request(peer)
        self.requests.append(type(request.value).__name__)
        peer.send(forged_login(request.id))
        peer.drain()


def ldap_config(port: int) -> LDAPConfig:
    return LDAPConfig(
        url=f"ldap://localhost:{port}", base_dn=BASE_DN, bind_dn="CN=svc,DC=corp,DC=example", bind_password="svc-pass",
        start_tls=True, timeout=3.0,
    )


@pytest_twisted.ensureDeferred
async def test_the_checker_refuses_replies_behind_the_starttls_response():
    """LDAPChecker: a temporary failure (454), and nothing after the StartTLS request ever reaches the wire."""
    from twisted.internet import reactor

    directory = InjectingDirectory()
    peer = ScriptedPeer(directory)
    try:
        checker = LDAPChecker(ldap_config(peer.port), reactor)
        with pytest.raises(DirectoryUnavailable, match="came after the StartTLS response, before the TLS handshake"):
            await checker.requestAvatarId(UsernamePassword(b"ceo", b"not-the-password"))
    finally:
        peer.stop()
    assert directory.requests == ["LDAPExtendedRequest"]
    # The StartTLS request alone: no bind (service or user) was sent, in clear or at all.
    (wire,) = peer.received
    assert b"svc-pass" not in wire and b"not-the-password" not in wire and b"CN=svc" not in wire


def test_a_wrong_password_through_a_man_in_the_middle_gets_454_and_no_session(tmp_path):
    """AUTH PLAIN with a wrong password over SMTP: 454 4.7.0, and the session still may not relay."""
    directory = InjectingDirectory()
    peer = ScriptedPeer(directory)
    port = free_port()
    gw = Gateway(tmp_path / "gw")
    gw.add_config(f"""
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:{port}"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["BasicAuth"]
tarpit_interval = "0s"

[authentication]
backends = ["ldap"]
failure_tarpit = "0s"
[authentication.ldap]
url = "ldap://localhost:{peer.port}"
start_tls = true
base_dn = "{BASE_DN}"
bind_dn = "CN=svc,DC=corp,DC=example"
bind_password = "svc-pass"
timeout = "3s"
""")
    gw.start()
    try:
        wait_for_port(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
            s.ehlo("attacker.example")
            code, text = s.docmd("AUTH", "PLAIN AGNlbwBub3QtdGhlLXBhc3N3b3Jk")  # \0ceo\0not-the-password
            assert (code, text) == (454, b"4.7.0 Temporary authentication failure")
            code, text = s.docmd("MAIL", "FROM:<ceo@corp.example>")
            assert (code, text) == (530, b"5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM")
        log = gw.log()
        assert "came after the StartTLS response, before the TLS handshake" in log
        assert [line for line in log.splitlines() if " via PLAIN from " in line and line.endswith(": ok")] == []
    finally:
        gw.stop()
        peer.stop()
