"""
How the gateway's tiers prove to each other that they are gateway nodes.

Exchange's hub trusts the servers of its organisation through Kerberos
("ExchangeServer" authentication on the receive connector). exgateway uses a
node secret shared by every node: a file (`server.node_secret_file`, default
var/node.secret) made with mode 0600 at the first start and copied, as is,
to the other nodes. A hub connector with `auth_mechanisms =
["ExchangeServer"]` offers the SASL mechanism X-EXGW-NODE; a frontend (or
any node's hub pool) that finds it authenticates before its first MAIL:

    S: 250-AUTH X-EXGW-NODE
    C: AUTH X-EXGW-NODE
    S: 334 base64(<random nonce@hub fqdn>)
    C: base64(<node name> <hex HMAC-SHA256(secret, challenge)>)
    S: 235 2.7.0 Authentication successful

A challenge and response rather than the secret itself (PLAIN): the
hand-off between machines is often clear text, and a listener on that
network must not learn the secret. Only an authenticated node gets the
ExchangeServers rights there, XFORWARD among them, so a local process or a
host in the connector's ranges cannot claim to speak for a client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from twisted.application.service import Service

from gateway.errors import Reply, SMTPError
from gateway.files import create_new, make_directory

MECHANISM = "X-EXGW-NODE"
# A node's name goes into logs and Received headers: a server name, nothing else.
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SECRET_BYTES = 32
# An admin's own secret may be any text, but not a guessable one.
MIN_SECRET_CHARACTERS = 32


class NodeSecretError(Exception):
    """The node secret file cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class NodeLogin:
    """The result of a successful X-EXGW-NODE exchange: which node it was."""

    node: str


class NodeCredential:
    """The shared node secret (read from `path`, made there on first start) and this node's name."""

    def __init__(self, path: Path, node_name: str, random=os.urandom, secret: bytes | None = None) -> None:
        self.path = Path(path)
        self.node_name = node_name
        self.random = random
        # Read from `path` by ensure(); given here only by tests (gateway/testing.py).
        self._secret = secret

    def ensure(self) -> bytes:
        """Make the secret file if there is none (atomically: a racing node's file wins), then read and return it."""
        if not os.path.lexists(self.path):
            make_directory(self.path.parent)
            tmp = self.path.with_name(f".{self.path.name}.{self.random(8).hex()}.tmp")
            fd = create_new(tmp)
            try:
                os.write(fd, self.random(SECRET_BYTES).hex().encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                # link() never replaces: a secret another process made meanwhile stands.
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        self._secret = secret = self._read()
        return secret

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise NodeSecretError(f"cannot read the node secret {self.path}: {e.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NodeSecretError(f"the node secret {self.path} is not a regular file")
            if info.st_mode & 0o077:
                raise NodeSecretError(
                    f"the node secret {self.path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
                )
            data = os.read(fd, 4096).strip()
        finally:
            os.close(fd)
        if len(data) < MIN_SECRET_CHARACTERS:
            raise NodeSecretError(f"the node secret {self.path} is shorter than {MIN_SECRET_CHARACTERS} characters")
        return data

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            return self.ensure()
        return self._secret

    def challenge(self, fqdn: str) -> str:
        return f"<{self.random(16).hex()}@{fqdn}>"

    def proof(self, challenge: str) -> str:
        """The client's answer to a hub's challenge."""
        digest = hmac.new(self.secret, challenge.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{self.node_name} {digest}"

    def verify(self, challenge: str, response: str) -> str | None:
        """The node name if `response` proves the secret for `challenge`, else None."""
        name, _, digest = response.rpartition(" ")
        if not _NODE_NAME.match(name) or not digest:
            return None
        expected = hmac.new(self.secret, challenge.encode("utf-8"), hashlib.sha256).hexdigest()
        return name if hmac.compare_digest(expected.encode(), digest.encode("utf-8", "replace")) else None


def offered(extensions: dict[str, str]) -> bool:
    """Does an EHLO reply (the client's parsed keywords) offer node authentication?"""
    return MECHANISM in extensions.get("AUTH", "").upper().split()


class NodeAuth:
    """The hub's side of X-EXGW-NODE, as a SASL state machine like those of smtpd/sasl.py."""

    name = MECHANISM

    def __init__(self, credential: NodeCredential, fqdn: str) -> None:
        self.credential = credential
        self.challenge = credential.challenge(fqdn)

    def start(self, initial: str | None) -> str:
        if initial is not None:
            # The response depends on a challenge the client has not seen yet.
            raise SMTPError(Reply.AUTH_FAILED, reason="X-EXGW-NODE takes no initial response")
        return base64.b64encode(self.challenge.encode()).decode()

    def respond(self, line: str) -> NodeLogin:
        text = line.strip()
        if text == "*":
            raise SMTPError(Reply.AUTH_CANCELLED, reason="client cancelled AUTH")
        try:
            response = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SMTPError(Reply.AUTH_BAD_BASE64, reason="bad base64 in AUTH") from None
        node = self.credential.verify(self.challenge, response)
        if node is None:
            raise SMTPError(Reply.AUTH_FAILED, reason=f"node credential refused (claimed node {response.rpartition(' ')[0][:64]!r})")
        return NodeLogin(node)


_LOOPBACK = {4: (int(ipaddress.ip_address("127.0.0.0")), int(ipaddress.ip_address("127.255.255.255"))), 6: (1, 1)}


def _loopback(r) -> bool:
    low, high = _LOOPBACK[r.version]
    return r.first <= high and low <= r.last


def external_authoritative_warnings(config) -> list[str]:
    """
    `exgateway config check` warnings: ExternalAuthoritative trusts every
    client in a connector's remote ranges as a gateway node (Exchange's
    "Externally Secured"). The rule: each range must be one address (a /32,
    a /128), and not a loopback one, since any local user can connect from
    loopback. Anything wider trusts hosts that are not gateway nodes; use
    "ExchangeServer" (the node secret) instead.
    """
    warnings = []
    for c in config.receive_connectors:
        if not c.enabled or "ExternalAuthoritative" not in c.auth_mechanisms:
            continue
        wide = []
        for r in c.remote_ip_ranges:
            if r.size > 1:
                wide.append(f"{r} ({r.size} addresses)")
            elif _loopback(r):
                wide.append(f"{r} (loopback: any local process)")
        if wide:
            warnings.append(
                f"receive connector '{c.identity}': ExternalAuthoritative trusts every client in {', '.join(wide)} "
                "as a gateway node (relay anywhere, any sender); list the nodes' own addresses one by one, "
                'or use auth_mechanisms = ["ExchangeServer"] (the node secret)'
            )
    return warnings


class NodeSecretService(Service):
    """
    Makes (first start) and reads the node secret when the service starts,
    after twistd has dropped privileges, so the file belongs to the service
    user; a secret that cannot be used stops start-up with the reason.
    """

    def __init__(self, credential: NodeCredential) -> None:
        self.credential = credential

    def startService(self) -> None:
        try:
            self.credential.ensure()
        except NodeSecretError as e:
            raise SystemExit(f"exgateway: {e}") from None
        except OSError as e:
            raise SystemExit(f"exgateway: cannot make the node secret {self.credential.path}: {e.strerror}") from None
        super().startService()
