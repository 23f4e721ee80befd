"""
In-memory fakes and builders for tests (ours and, later, plugin authors').

`FakeHandler` stands in for a tier behind the protocol: it records what the
protocol asked and answers with replies the test controls, synchronously or
through Deferreds the test fires, to exercise pipelining order.
`FakeRouter`, `FakeDeliverer` and `FakeQueueStore` stand in for the router,
a deliverer and the queue store (gateway/interfaces.py); tests/contracts/
runs the same assertions against each of them and the real provider.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from gateway.address import parse_mailbox
from gateway.auth.node import MECHANISM, NodeCredential
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Outcome, RecipientState
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.interfaces import IDeliverer, IMessageHandler, IMessageTransaction, IQueueEntry, IQueueStore, IRouter
from gateway.nexthop import MAILBOX, NextHop
from gateway.route.router import Decision


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


@implementer(IMessageTransaction)
class FakeTransaction:
    def __init__(self, handler: FakeHandler, session, mail) -> None:
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


@implementer(IMessageHandler)
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


@implementer(IRouter)
class FakeRouter:
    """
    Routes by domain from tables the test gives: `mailbox_domains` go to
    the mailbox store, `routes` maps a domain to its send connector (routed
    as NextHop.via(connector)), every other domain has no route. tests/contracts/ holds it
    to what callers rely on from gateway.route.router.Router.
    """

    def __init__(self, mailbox_domains=(), routes: dict | None = None, recipient_exists=None) -> None:
        self.mailbox_domains = {d.lower() for d in mailbox_domains}
        self.routes = {d.lower(): hop for d, hop in (routes or {}).items()}
        self.recipient_exists = recipient_exists
        # Every address asked about, in order.
        self.asked: list[str] = []

    def decide(self, recipient) -> Decision:
        self.asked.append(str(recipient))
        if recipient.literal:
            return Decision(None, "", "an address literal is not routed")
        domain = recipient.domain.lower()
        if domain in self.mailbox_domains:
            return Decision(MAILBOX, "Authoritative", f"{domain} is a mailbox domain (FakeRouter)")
        connector = self.send_connector(domain)
        if connector is None:
            return Decision(None, "", f"{domain} has no route (FakeRouter)")
        return Decision(NextHop.via(connector), "", f"{domain} is routed to {connector.name} (FakeRouter)")

    def route(self, recipient):
        return self.decide(recipient).hop

    def route_address(self, address: str):
        try:
            recipient = parse_mailbox(address, utf8=not address.isascii())
        except SMTPError:
            return None
        return self.route(recipient)

    def send_connector(self, domain: str, catch_all: bool = True):
        return self.routes.get(domain.lower())


@implementer(IDeliverer)
class FakeDeliverer:
    """
    Delivers in memory: `delivered[address]` holds the bytes each recipient
    got, `calls` each (queue id, recipients). `answers[address]` sets a
    recipient's (RecipientState, reply) instead of the default 250; with
    `hold=True` each call's Deferred waits in `pending` for the test to fire.
    """

    def __init__(self, answers: dict | None = None, hold: bool = False) -> None:
        self.answers = dict(answers or {})
        self.hold = hold
        self.delivered: dict[str, list[bytes]] = {}
        self.calls: list[tuple[str, list[str]]] = []
        self.pending: list[tuple[Deferred, dict]] = []
        # How many times close() was called (the scheduler's stop closes every deliverer).
        self.closed = 0

    def deliver(self, envelope, recipients: list[str], body) -> Deferred:
        self.calls.append((envelope.queue_id, list(recipients)))
        with body.open() as f:
            data = f.read()
        results = {}
        for address in recipients:
            answer = self.answers.get(address)
            if answer is None:
                self.delivered.setdefault(address, []).append(data)
                answer = (RecipientState.DELIVERED, Outcome(f"250 2.0.0 delivered to {address} (FakeDeliverer)", "delivered"))
            results[address] = answer
        if self.hold:
            d: Deferred = Deferred()
            self.pending.append((d, results))
            return d
        return succeed(results)

    def close(self) -> None:
        self.closed += 1


@implementer(IQueueEntry)
class FakeQueueEntry:
    """A message being written into a FakeQueueStore."""

    def __init__(self, queue_id: str) -> None:
        self.queue_id = queue_id
        self.size = 0
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.chunks.append(data)


class FakeDisk:
    """What a FakeQueueStore keeps "on disk": survives a new store made over it, as files survive a restart."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.envelopes: dict[str, Envelope] = {}
        self.failed: dict[str, Envelope] = {}


@implementer(IQueueStore)
class FakeQueueStore:
    """
    The queue in memory: a commit is durable at once (its Deferred fires
    with None, or is held in `held` with `hold_commits=True`); a new store
    over the same `disk` recovers what was committed, updated and not
    removed. Bodies are read back with `body(queue_id)`; `body_file` names
    no real file.
    """

    def __init__(self, disk: FakeDisk | None = None, directory: Path = Path("fake-queue"), hold_commits: bool = False) -> None:
        self.disk = disk if disk is not None else FakeDisk()
        self.directory = Path(directory)
        self.hold_commits = hold_commits
        self.held: list[Deferred] = []
        self.stopped = False
        self.highest_id = 0

    def prepare(self) -> None:
        pass

    def open_entry(self, new_id) -> FakeQueueEntry:
        return FakeQueueEntry(str(new_id()))

    def create(self, queue_id: str) -> FakeQueueEntry:
        return FakeQueueEntry(queue_id)

    def commit(self, entry: FakeQueueEntry, envelope: Envelope) -> Deferred:
        self.disk.bodies[entry.queue_id] = b"".join(entry.chunks)
        self.disk.envelopes[entry.queue_id] = envelope
        if self.hold_commits:
            d: Deferred = Deferred()
            self.held.append(d)
            return d
        return succeed(None)

    def discard(self, entry: FakeQueueEntry) -> None:
        entry.chunks = []

    def exists(self, queue_id: str) -> bool:
        return queue_id in self.disk.envelopes

    def update(self, envelope: Envelope) -> Deferred:
        if envelope.queue_id not in self.disk.envelopes:
            return fail(FileNotFoundError(envelope.queue_id))
        self.disk.envelopes[envelope.queue_id] = envelope
        return succeed(None)

    def remove(self, queue_id: str, reuse: bool = True) -> None:
        self.disk.envelopes.pop(queue_id, None)
        self.disk.bodies.pop(queue_id, None)

    def set_failed(self, queue_id: str) -> None:
        envelope = self.disk.envelopes.pop(queue_id, None)
        self.disk.bodies.pop(queue_id, None)
        if envelope is not None:
            self.disk.failed[queue_id] = envelope

    def body_file(self, queue_id: str) -> str:
        return str(self.body_path(queue_id))

    def body_path(self, queue_id: str) -> Path:
        return self.directory / (queue_id + ".msg")

    def body(self, queue_id: str) -> bytes:
        """A queued message's body bytes (what the real store's file holds before its trailer)."""
        return self.disk.bodies[queue_id]

    def recover(self) -> list[Envelope]:
        ids = list(self.disk.envelopes) + list(self.disk.failed)
        self.highest_id = max((int(i) for i in ids if i.isdigit()), default=0)
        return [self.disk.envelopes[q] for q in sorted(self.disk.envelopes)]

    def adopt(self, other) -> int:
        moved = 0
        for queue_id, envelope in other.disk.envelopes.items():
            self.disk.envelopes[queue_id] = envelope
            self.disk.bodies[queue_id] = other.disk.bodies[queue_id]
            moved += 1
        other.disk.envelopes.clear()
        other.disk.bodies.clear()
        return moved

    def stop(self) -> None:
        self.stopped = True
