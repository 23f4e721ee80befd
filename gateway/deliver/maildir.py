"""
Local mailbox delivery into Maildir (one directory per recipient).

Layout: `<root>/<domain>/<local part>/{tmp,new,cur}`, names lower-cased and
unsafe characters percent-encoded, so no address can climb out of the root.
UTF-8 addresses (SMTPUTF8, RFC 6531): the domain is already its A-label
(`xn--bcher-kva.example`, gateway/address.py), and the local part is put in
Unicode NFC (so composed and decomposed spellings share one mailbox),
lower-cased, and every byte of its UTF-8 outside the safe ASCII set
percent-encoded: `Jösé@bücher.example` ->
`xn--bcher-kva.example/j%C3%B6s%C3%A9`. No byte of a name is ever `/`, NUL
or a leading `.`.
Each recipient gets a copy of the message's bytes (the queue file holds its
envelope after them) in `tmp/`, fsynced, then renamed into `new/`, and `new/`
is fsynced before the recipient counts as delivered: the queue forgets a
message only once every copy is durable.

A Maildir is made at a recipient's first delivery, never at RCPT. Without
recipient validation any local part of an accepted domain is accepted, and
each new one would cost four directories: `[mailbox] max_mailboxes` (10,000
by default) caps how many the gateway makes. Past it a delivery to a new
mailbox is deferred (451 4.3.1, the queue shows why), existing mailboxes
go on receiving, and the admin raises the cap or turns on recipient
validation so that unknown local parts are refused at RCPT.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import unicodedata
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gateway.envelope import Envelope, Outcome, RecipientState
from gateway.files import create_new, fsync_directory, make_directory
from gateway.interfaces import IDeliverer
from gateway.queue.entry import StoredBody

_SAFE = "!#$&'*+-=?^_`{|}~"
MAILBOX_LIMIT = "451 4.3.1 Insufficient system resources: [mailbox] max_mailboxes reached, no new mailbox made"
_counter = itertools.count(1)


def mailbox_path(root: Path, address: str) -> Path:
    local, _, domain = address.rpartition("@")
    local_name = quote(unicodedata.normalize("NFC", local).lower(), safe=_SAFE)
    if local_name.startswith("."):
        local_name = "%2E" + local_name[1:]
    domain_name = quote(domain.lower(), safe="")
    return root / domain_name / local_name


@implementer(IDeliverer)
class MaildirDelivery:
    """Delivers a queued message to Maildirs; blocking work in a thread."""

    def __init__(self, root: Path, run_in_thread: Callable[..., Deferred], clock, max_mailboxes: int | None = None) -> None:
        self.root = Path(root)
        self._run = run_in_thread
        self.clock = clock
        self.max_mailboxes = max_mailboxes
        # Mailboxes under root, counted once (in the delivery thread) when first needed, then kept up to date.
        self._mailboxes: int | None = None
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def deliver(self, envelope: Envelope, recipients: list[str], body: StoredBody) -> Deferred:
        """Fire with {address: (state, reply text)} for each recipient."""
        now = self.clock.seconds()
        return self._run(self._deliver_sync, recipients, body, now)

    def close(self) -> None:
        """Nothing kept open between deliveries (IDeliverer.close)."""

    def _unique_name(self, now: float) -> str:
        return f"{int(now)}.M{int((now % 1) * 1_000_000)}P{os.getpid()}Q{next(_counter)}.{self._host}"

    def _deliver_sync(self, recipients: list[str], body: StoredBody, now: float) -> dict:
        results = {}
        for address in recipients:
            try:
                reply = self._deliver_one(address, body, now)
                if reply is MAILBOX_LIMIT:
                    results[address] = (RecipientState.PENDING, reply)
                else:
                    # In the mailbox: a success notice (NOTIFY=SUCCESS) is ours to send, as "delivered".
                    results[address] = (RecipientState.DELIVERED, Outcome(reply, "delivered"))
            except OSError as e:
                results[address] = (RecipientState.PENDING, f"451 4.3.0 mailbox write failed: {e.strerror}")
        return results

    def _count_mailboxes(self) -> int:
        if self._mailboxes is None:
            try:
                domains = [d for d in os.scandir(self.root) if d.is_dir(follow_symlinks=False)]
                self._mailboxes = sum(1 for d in domains for box in os.scandir(d.path) if box.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                self._mailboxes = 0
        return self._mailboxes

    def _deliver_one(self, address: str, body: StoredBody, now: float) -> str:
        box = mailbox_path(self.root, address)
        new_box = False
        if self.max_mailboxes is not None and not os.path.isdir(box):
            new_box = True
            if self._count_mailboxes() >= self.max_mailboxes:
                return MAILBOX_LIMIT
        for sub in ("tmp", "new", "cur"):
            make_directory(box / sub)
        if new_box:
            self._mailboxes = self._count_mailboxes() + 1
        name = self._unique_name(now)
        tmp = box / "tmp" / name
        # A copy of the body alone (the queue file goes on with its envelope), synced before it appears in new/.
        with body.open() as src, open(create_new(tmp), "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, box / "new" / name)
        fsync_directory(box / "new")
        return f"250 2.0.0 delivered to maildir {box.name}@{box.parent.name}/new/{name}"
