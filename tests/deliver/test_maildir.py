"""Maildir delivery: one durable copy per recipient under new/, no path escapes."""

from pathlib import Path

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from gateway.deliver.maildir import MaildirDelivery, mailbox_path
from gateway.envelope import RecipientState
from gateway.queue.entry import StoredBody
from gateway.queue.format import trailer


def test_mailbox_path_cannot_escape_root():
    root = Path("/srv/mail")
    assert mailbox_path(root, "Alice@Corp.Example") == root / "corp.example" / "alice"
    assert mailbox_path(root, "../../etc@corp.example") == root / "corp.example" / "%2E.%2F..%2Fetc"
    assert mailbox_path(root, "a/b@corp.example") == root / "corp.example" / "a%2Fb"


def test_each_recipient_gets_the_bytes_in_new(tmp_path):
    """The message's bytes only: the queue file goes on with its envelope."""
    body = tmp_path / "q.eml"
    body.write_bytes(b"Subject: x\r\n\r\nhi\r\n" + trailer(b'{"queue_id": "q"}', 18))
    clock = Clock()
    clock.advance(1_795_000_000.5)
    delivery = MaildirDelivery(tmp_path / "mail", lambda f, *a: succeed(f(*a)), clock)
    results = []
    delivery.deliver(None, ["alice@corp.example", "bob@corp.example"], StoredBody(body, size=18)).addCallback(results.append)
    (result,) = results
    assert {a: s for a, (s, _) in result.items()} == {
        "alice@corp.example": RecipientState.DELIVERED,
        "bob@corp.example": RecipientState.DELIVERED,
    }
    # A success notice (NOTIFY=SUCCESS) for a mailbox delivery is ours to send, as "delivered".
    assert {reply.dsn_action for _, reply in result.values()} == {"delivered"}
    for user in ("alice", "bob"):
        box = tmp_path / "mail" / "corp.example" / user
        (msg,) = list((box / "new").iterdir())
        assert msg.read_bytes() == b"Subject: x\r\n\r\nhi\r\n"
        assert msg.name.startswith("1795000000.M500000P")
        assert list((box / "tmp").iterdir()) == [] and (box / "cur").is_dir()


def test_utf8_local_parts_get_a_percent_encoded_nfc_directory_and_cannot_escape():
    """The documented mapping: NFC, lower case, UTF-8 bytes percent-encoded; the domain arrives as its A-label."""
    root = Path("/srv/mail")
    assert mailbox_path(root, "Jösé@xn--bcher-kva.example") == root / "xn--bcher-kva.example" / "j%C3%B6s%C3%A9"
    # The decomposed spelling (o + combining diaeresis) is the same mailbox.
    assert mailbox_path(root, "jo\u0308sé@xn--bcher-kva.example") == root / "xn--bcher-kva.example" / "j%C3%B6s%C3%A9"
    # Fullwidth solidus and full stop: percent-encoded bytes, never a separator or a dot-dot.
    assert mailbox_path(root, "\uff0e\uff0e\uff0fetc@corp.example") == root / "corp.example" / "%EF%BC%8E%EF%BC%8E%EF%BC%8Fetc"
