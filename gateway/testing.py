"""
In-memory fakes and builders for tests (ours and, later, plugin authors').

`FakeHandler` stands in for a tier behind the protocol: it records what the
protocol asked and answers with replies the test controls, synchronously or
through Deferreds the test fires, to exercise pipelining order.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport

from pathlib import Path

from gateway.auth.node import MECHANISM, NodeCredential
from gateway.config import Config, parse_config
from gateway.errors import Reply, SMTPReply


def config(**sections) -> Config:
    """A Config from TOML-shaped dicts; sensible defaults for what is not given."""
    raw = {
        "server": {"name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": "var"},
        "accepted_domains": [{"domain": "corp.example"}],
        "receive_connectors": [
            {"name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:2025"], "permission_groups": ["AnonymousUsers"]},
            {
                "name": "Default",
                "role": "hub",
                "bindings": ["127.0.0.1:2525"],
                "remote_ip_ranges": ["127.0.0.0/8"],
                "permission_groups": ["ExchangeServers"],
                "auth_mechanisms": ["ExchangeServer"],
            },
        ],
        "hub_pool": {"hosts": ["127.0.0.1:2525"]},
    }
    raw.update(sections)
    return parse_config(raw, "test.toml")


NODE_SECRET = b"5e" * 32


def node_credential(name: str = "FRONTEND1", secret: bytes = NODE_SECRET) -> NodeCredential:
    """A node secret in memory, with a fixed challenge (random bytes all zero), so a test can send the whole exchange at once."""
    return NodeCredential(Path("node.secret"), name, random=bytes, secret=secret)


def node_login(credential: NodeCredential, fqdn: str = "mail.corp.example") -> bytes:
    """The client's lines of a node login to a hub using `node_credential()`'s fixed challenge."""
    import base64

    challenge = NodeCredential(Path("unused"), "", random=bytes, secret=b"-").challenge(fqdn)
    return f"AUTH {MECHANISM}\r\n{base64.b64encode(credential.proof(challenge).encode()).decode()}\r\n".encode()


class FakeTransaction:
    def __init__(self, handler: "FakeHandler", session, mail) -> None:
        self.handler = handler
        self.session = session
        self.mail = mail
        self.recipients: list = []
        # Each recipient's NOTIFY/ORCPT (RecipientDSN or None), by address.
        self.dsn: dict = {}
        self.body = b""
        self.opened = False
        self.aborted = False
        self.finished = False

    def add_recipient(self, recipient, dsn=None):
        self.dsn[str(recipient)] = dsn
        if self.handler.rcpt_deferreds is not None:
            d: Deferred = Deferred()
            self.handler.rcpt_deferreds.append((recipient, d))
            return d.addCallback(self._added, recipient)
        return self._added(self.handler.rcpt_reply, recipient)

    def _added(self, reply: SMTPReply, recipient):
        if reply.positive:
            self.recipients.append(recipient)
        return reply

    def open_body(self):
        self.opened = True

    def write(self, data: bytes) -> None:
        self.body += data

    def finish(self):
        self.finished = True
        self.handler.finished.append(self)
        if self.handler.finish_deferreds is not None:
            d: Deferred = Deferred()
            self.handler.finish_deferreds.append(d)
            return d
        return succeed(self.handler.final_reply)

    def abort(self) -> None:
        self.aborted = True


class FakeHandler:
    def __init__(self) -> None:
        self.transactions: list[FakeTransaction] = []
        self.finished: list[FakeTransaction] = []
        self.rcpt_reply = Reply.RECIPIENT_OK
        self.final_reply = SMTPReply(250, "2.6.0", "<id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery")
        self.rcpt_deferreds: list | None = None
        self.finish_deferreds: list | None = None

    def begin(self, session, mail) -> FakeTransaction:
        txn = FakeTransaction(self, session, mail)
        self.transactions.append(txn)
        return txn


class SocketLikeTransport(StringTransport):
    """
    A StringTransport with a descriptor's doWrite (see gateway/fastpath/sendnow.py):
    `sends` holds what was handed to the kernel, one entry per send.
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.sends: list[bytes] = []

    def doWrite(self) -> None:
        data = self.value()
        self.clear()
        if data:
            self.sends.append(data)
