"""
Attack: one anonymous message to 200 made-up local parts of an accepted
domain made 200 Maildirs (1,200 inodes); repeated, it exhausts the file
system's inodes. Mailboxes are made at first delivery only, and at most
[mailbox] max_mailboxes of them; past it a new mailbox's delivery is
deferred and existing mailboxes go on receiving.
"""

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from gateway import testing
from gateway.deliver.maildir import MAILBOX_LIMIT, MaildirDelivery
from gateway.envelope import RecipientState
from gateway.queue.entry import StoredBody
from gateway.queue.format import trailer


def _body(tmp_path):
    body = tmp_path / "q.eml"
    body.write_bytes(b"Subject: x\r\n\r\nhi\r\n" + trailer(b'{"queue_id": "q"}', 18))
    return StoredBody(body, size=18)


def test_two_hundred_made_up_recipients_make_at_most_max_mailboxes(tmp_path):
    root = tmp_path / "mail"
    (root / "corp.example" / "alice" / "new").mkdir(parents=True)  # an existing mailbox
    clock = Clock()
    delivery = MaildirDelivery(root, lambda f, *a: succeed(f(*a)), clock, max_mailboxes=5)
    recipients = [f"user{n}@corp.example" for n in range(200)] + ["alice@corp.example"]
    results = []
    delivery.deliver(None, recipients, _body(tmp_path)).addCallback(results.append)
    (result,) = results
    delivered = sorted(a for a, (state, _) in result.items() if state is RecipientState.DELIVERED)
    assert delivered == ["alice@corp.example", "user0@corp.example", "user1@corp.example", "user2@corp.example", "user3@corp.example"]
    deferred = {a: reply for a, (state, reply) in result.items() if state is RecipientState.PENDING}
    assert len(deferred) == 196 and set(deferred.values()) == {MAILBOX_LIMIT}
    assert MAILBOX_LIMIT.startswith("451 4.3.1 ")
    assert len(list((root / "corp.example").iterdir())) == 5


def test_the_cap_is_in_the_config_with_a_default():
    assert testing.config().mailbox.max_mailboxes == 10_000
    assert testing.config(mailbox={"max_mailboxes": "unlimited"}).mailbox.max_mailboxes is None
