"""
The deliverer's contract: one set of assertions run against the Maildir
deliverer (gateway/deliver/maildir.py) and gateway.testing.FakeDeliverer,
for what the scheduler relies on: an answer for every recipient given, a
2xx and DELIVERED for a delivery, the body's exact bytes, a recipient's
trouble answered as PENDING with a 4xx, not as a failure of the whole call,
and a close() at stop that is always there and harmless to repeat.
"""

import os

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from gateway.deliver.maildir import MaildirDelivery, mailbox_path
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.entry import StoredBody
from gateway.testing import FakeDeliverer

BODY = b"Received: from scanner3\r\nSubject: scan\r\n\r\n.leading dot kept\r\nline\r\n"
ALICE, BOB = "alice@corp.example", "bob@corp.example"


def sync_runner(f, *args):
    return succeed(f(*args))


def envelope() -> Envelope:
    return Envelope("1001", 1001, "<m@x>", "scanner@corp.example", (Recipient(ALICE), Recipient(BOB)), 1.0, len(BODY))


def result_of(d):
    results = []
    d.addBoth(results.append)
    assert results, "the deliverer's Deferred did not fire"
    return results[0]


class DelivererContract:
    """make_deliverer(broken=address) returns a deliverer for which that one recipient cannot be written."""

    def make_deliverer(self, broken: str | None = None):
        raise NotImplementedError

    def delivered_bytes(self, deliverer, address: str) -> list[bytes]:
        raise NotImplementedError

    def test_every_recipient_is_delivered_with_a_2xx_and_the_exact_bytes(self, tmp_path):
        """Both recipients: DELIVERED, a 250 reply, and the body byte for byte (leading dot and CRLF untouched)."""
        self.tmp_path = tmp_path
        deliverer = self.make_deliverer()
        body = StoredBody(tmp_path / "unused", BODY)
        results = result_of(deliverer.deliver(envelope(), [ALICE, BOB], body))
        assert set(results) == {ALICE, BOB}
        for address in (ALICE, BOB):
            state, reply = results[address]
            assert state is RecipientState.DELIVERED and reply.startswith("250 ")
            assert self.delivered_bytes(deliverer, address) == [BODY]

    def test_only_the_recipients_given_are_answered(self, tmp_path):
        """Given one of the envelope's two recipients (the other done already), only that one is answered and delivered."""
        self.tmp_path = tmp_path
        deliverer = self.make_deliverer()
        results = result_of(deliverer.deliver(envelope(), [BOB], StoredBody(tmp_path / "unused", BODY)))
        assert list(results) == [BOB]
        assert self.delivered_bytes(deliverer, ALICE) == []

    def test_one_recipient_that_cannot_be_written_is_pending_and_the_other_still_delivered(self, tmp_path):
        """A recipient's trouble is that recipient's 4xx (PENDING, tried again), not a failed call."""
        self.tmp_path = tmp_path
        deliverer = self.make_deliverer(broken=ALICE)
        results = result_of(deliverer.deliver(envelope(), [ALICE, BOB], StoredBody(tmp_path / "unused", BODY)))
        state, reply = results[ALICE]
        assert state is RecipientState.PENDING and reply.startswith("451 4.")
        assert results[BOB][0] is RecipientState.DELIVERED
        assert self.delivered_bytes(deliverer, BOB) == [BODY]

    def test_close_at_stop_is_harmless_twice_and_delivery_still_answers(self, tmp_path):
        """IDeliverer.close (the scheduler's stop closes every deliverer): no error, twice; a Maildir keeps nothing open to lose."""
        self.tmp_path = tmp_path
        deliverer = self.make_deliverer()
        deliverer.close()
        deliverer.close()
        results = result_of(deliverer.deliver(envelope(), [ALICE], StoredBody(tmp_path / "unused", BODY)))
        assert results[ALICE][0] is RecipientState.DELIVERED


class TestMaildirDelivery(DelivererContract):
    def make_deliverer(self, broken=None):
        root = self.tmp_path / "mail"
        if broken is not None:
            # A file where the recipient's mailbox directory should be: its directories cannot be made.
            box = mailbox_path(root, broken)
            box.parent.mkdir(parents=True)
            box.write_bytes(b"")
        return MaildirDelivery(root, sync_runner, Clock())

    def delivered_bytes(self, deliverer, address):
        new = mailbox_path(deliverer.root, address) / "new"
        if not new.is_dir():
            return []
        return [(new / name).read_bytes() for name in sorted(os.listdir(new))]


class TestFakeDeliverer(DelivererContract):
    def make_deliverer(self, broken=None):
        answers = {broken: (RecipientState.PENDING, "451 4.3.0 mailbox write failed (FakeDeliverer)")} if broken else {}
        return FakeDeliverer(answers)

    def delivered_bytes(self, deliverer, address):
        return deliverer.delivered.get(address, [])
