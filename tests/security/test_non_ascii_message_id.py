"""
Attack: a client sends a message whose Message-ID holds a byte that is not
ASCII to a recipient that fails. The NDR builder raised, and the message
stayed "Ready" for ever (and, retried, was delivered again to the
recipients that had got it).
"""

from twisted.internet.defer import succeed

from gateway.envelope import Envelope, RecipientState
from gateway.headers import HeaderScan
from tests.queue.test_scheduler import setup


def test_a_non_ascii_message_id_gets_its_ndr_and_the_message_leaves(tmp_path):
    """The reported attack: Message-ID: <caf\xe9@x> made the NDR builder raise and the message stayed Ready forever."""
    from gateway.intake import InternalIds
    from gateway.queue.notify import Notifier

    store, clock, mailbox, scheduler, env = setup(tmp_path)
    scan = HeaderScan()
    scan.feed(b"Message-ID: <caf\xe9@x>\r\nSubject: t\r\n\r\nbody\r\n")
    env = Envelope(**{**env.__dict__, "message_id": scan.message_id})
    enqueued = []
    scheduler.notifier = Notifier(store, InternalIds(clock, lambda: 43), clock, "mail.corp.example", lambda f, *a: succeed(f(*a)),
                                  lambda e, body: enqueued.append((e, body)))
    mailbox.outcomes = [{"a@corp.example": (RecipientState.FAILED, "550 5.1.1 unknown"), "b@corp.example": (RecipientState.FAILED, "550 5.1.1 unknown")}]
    scheduler.start([env])
    (_notice, body), = enqueued
    assert b"Your message <caf?@x> could not be delivered" in body
    assert not store.exists("42") and not (store.failed_directory / "42.json").exists()
    assert "42" not in scheduler.messages
