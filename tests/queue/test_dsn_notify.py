"""
RFC 3461 in our own notices: NOTIFY decides which notices a recipient gets,
RET=FULL returns the message, ENVID and ORCPT come back to the sender, and a
NOTIFY=SUCCESS recipient gets "delivered" (mailbox) or "relayed" (next hop
without DSN) notices.
"""

import email
from email import policy

from twisted.internet.defer import succeed

from gateway.envelope import Envelope, Outcome, Recipient, RecipientState
from gateway.queue.dsn import build_dsn
from gateway.queue.format import decode_envelope, encode_envelope
from gateway.queue.notify import Notifier, success_notices
from gateway.queue.retry import RetryPolicy
from tests.queue.test_scheduler import BODY, Notices, setup

HEADERS = b"Subject: Monthly report\r\nFrom: app@corp.example\r\n"
DELIVERED, FAILED, PENDING = RecipientState.DELIVERED, RecipientState.FAILED, RecipientState.PENDING


def _notifier(tmp_path):
    from gateway.intake import InternalIds

    store, clock, _mailbox, _scheduler, env = setup(tmp_path)
    enqueued = []
    notifier = Notifier(store, InternalIds(clock, lambda: 42), clock, "mail.corp.example", lambda f, *a: succeed(f(*a)),
                        lambda e, body: enqueued.append((e, body)))
    return store, env, notifier, enqueued


def test_a_success_notice_for_a_mailbox_delivery_carries_envid_and_orcpt():
    env = Envelope("42", 42, "<m42@corp.example>", "app@corp.example", (), 1_795_000_000.0, 100, dsn_envid="QQ314159")
    rcpt = Recipient("alice@corp.example", DELIVERED, 1, "250 2.0.0 delivered to maildir alice@corp.example/new/1",
                     notify="SUCCESS", orcpt="rfc822;Alice@Corp.example")
    raw = build_dsn("delivered", env, [rcpt], HEADERS, "mail.corp.example", 1_795_000_100.0, "b1", message_id="<n@x>")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Delivered: Monthly report"
    human, status, original = msg.get_payload()
    assert "was delivered to these recipients' mailboxes" in human.get_content()
    per_message, per_rcpt = status.get_payload()
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert (per_rcpt["Original-Recipient"], per_rcpt["Final-Recipient"], per_rcpt["Action"], per_rcpt["Status"]) == (
        "rfc822; Alice@Corp.example", "rfc822; alice@corp.example", "delivered", "2.0.0"
    )
    assert per_rcpt["Diagnostic-Code"] is None
    assert original.get_content_type() == "text/rfc822-headers"


def test_a_relayed_notice_says_no_further_notice_may_come():
    env = Envelope("42", 42, "<m42@corp.example>", "app@corp.example", (), 1_795_000_000.0, 100)
    rcpt = Recipient("far@outside.example", DELIVERED, 1, "250 2.0.0 queued as 7", notify="SUCCESS,FAILURE")
    raw = build_dsn("relayed", env, [rcpt], HEADERS, "mail.corp.example", 1_795_000_100.0, "b1", message_id="<n@x>")
    text = raw.decode()
    assert "Subject: Relayed: Monthly report\r\n" in text and "which does not report\r\ndelivery status" in text
    assert "Final-Recipient: rfc822; far@outside.example\r\nAction: relayed\r\nStatus: 2.0.0\r\n" in text
    assert "Diagnostic-Code: smtp; 250 2.0.0 queued as 7\r\n" in text


def test_notify_never_and_notify_success_only_get_no_failure_or_delay_notice(tmp_path):
    _store, env, notifier, enqueued = _notifier(tmp_path)
    never = Recipient("a@corp.example", FAILED, 1, "550 5.1.1 unknown", notify="NEVER")
    success_only = Recipient("b@corp.example", FAILED, 1, "550 5.1.1 unknown", notify="SUCCESS")
    assert notifier.notify("failed", env, [never, success_only]).result is None
    assert notifier.notify("delayed", env, [Recipient("a@corp.example", PENDING, 1, "451", notify="FAILURE")]).result is None
    assert enqueued == []
    notifier.notify("failed", env, [never, Recipient("c@corp.example", FAILED, 1, "550 5.1.1 unknown", notify="FAILURE")])
    ((_notice, body),) = enqueued
    assert b"Final-Recipient: rfc822; c@corp.example" in body and b"a@corp.example" not in body


def test_ret_full_returns_the_whole_message_in_a_non_delivery_report_and_hdrs_only_the_header(tmp_path):
    _store, env, notifier, enqueued = _notifier(tmp_path)
    failed = Recipient("a@corp.example", FAILED, 1, "550 5.1.1 unknown")
    notifier.notify("failed", Envelope(**{**env.__dict__, "dsn_ret": "FULL"}), [failed])
    notifier.notify("failed", Envelope(**{**env.__dict__, "dsn_ret": "HDRS"}), [failed])
    (_, full), (_, hdrs) = enqueued
    assert b"Content-Type: message/rfc822\r\n\r\n" + BODY + b"\r\n--exgw-" in full
    assert b"Content-Type: text/rfc822-headers\r\n\r\nSubject: t\r\n\r\n--exgw-" in hdrs


def test_success_notices_come_from_the_outcome_of_notify_success_recipients():
    env = Envelope("42", 42, "<m@x>", "s@x", (
        Recipient("a@corp.example", DELIVERED, notify="SUCCESS"),
        Recipient("b@corp.example", DELIVERED, notify="SUCCESS"),
        Recipient("c@corp.example", DELIVERED),
        Recipient("d@outside.example", DELIVERED, notify="SUCCESS,FAILURE"),
    ), 0.0, 1)
    results = {
        "a@corp.example": (DELIVERED, Outcome("250 2.0.0 delivered", "delivered")),
        "b@corp.example": (DELIVERED, "250 2.0.0 passed to a next hop with DSN"),
        "c@corp.example": (DELIVERED, Outcome("250 2.0.0 delivered", "delivered")),
        "d@outside.example": (DELIVERED, Outcome("250 2.0.0 queued", "relayed")),
    }
    found = success_notices(env, results)
    assert {k: [r.address for r in v] for k, v in found.items()} == {"delivered": ["a@corp.example"], "relayed": ["d@outside.example"]}


def test_the_scheduler_queues_a_delivered_notice_for_notify_success(tmp_path):
    store, _clock, mailbox, scheduler, env = setup(tmp_path)
    scheduler.retry = RetryPolicy(60, 0, 60)
    scheduler.notifier = Notices()
    env = Envelope(**{**env.__dict__, "recipients": (Recipient("a@corp.example", notify="SUCCESS"), Recipient("b@corp.example"))})
    mailbox.outcomes = [{
        "a@corp.example": (DELIVERED, Outcome("250 2.0.0 delivered to maildir", "delivered")),
        "b@corp.example": (DELIVERED, Outcome("250 2.0.0 delivered to maildir", "delivered")),
    }]
    scheduler.start([env])
    assert scheduler.notifier.sent == [("delivered", "42", ["a@corp.example"], ["250 2.0.0 delivered to maildir"])]
    assert not store.exists("42")


def test_dsn_fields_survive_the_queue_and_old_envelopes_still_load(tmp_path):
    """Stored per recipient and per message; an envelope written without them (the earlier format) reads with none."""
    import json

    env = Envelope("42", 42, "<m@x>", "s@x", (Recipient("a@corp.example", notify="SUCCESS,DELAY", orcpt="rfc822;a@corp.example"),
                                                 Recipient("b@corp.example")), 0.0, 1, dsn_ret="HDRS", dsn_envid="id 1")
    raw = encode_envelope(env)
    assert decode_envelope(raw) == env
    data = json.loads(raw)
    assert (data["dsn_ret"], data["dsn_envid"]) == ("HDRS", "id 1")
    assert data["recipients"][1] == {"address": "b@corp.example", "state": "pending", "attempts": 0, "last_reply": None}
    plain = json.loads(encode_envelope(Envelope("42", 42, "<m@x>", "s@x", (Recipient("b@corp.example"),), 0.0, 1)))
    assert "dsn_ret" not in plain and "dsn_envid" not in plain
    old = (b'{"attempts": 0, "client_ip": "", "connector": "", "extra": {}, "helo": "", "internal_id": 7, "message_id": "<m@x>", '
           b'"next_attempt": 0.0, "queue_id": "7", "received_at": 0.0, "recipients": [{"address": "a@corp.example", '
           b'"attempts": 0, "last_reply": null, "state": "pending"}], "sender": "s@x", "size": 1, "version": 1}')
    loaded = decode_envelope(old)
    assert (loaded.dsn_ret, loaded.dsn_envid, loaded.recipients[0].notify, loaded.recipients[0].orcpt) == ("", "", "", "")


def test_a_notice_about_an_internationalised_message_returns_global_headers_and_needs_smtputf8(tmp_path):
    """RFC 6533: the UTF-8 header section comes back as message/global-headers, and the notice itself needs SMTPUTF8."""
    _store, env, notifier, enqueued = _notifier(tmp_path)
    failed = Recipient("a@corp.example", FAILED, 1, "550 5.6.7 hop does not support SMTPUTF8")
    notifier.notify("failed", Envelope(**{**env.__dict__, "smtputf8": True}), [failed])
    notifier.notify("failed", env, [failed])
    (utf8_notice, utf8_body), (plain_notice, plain_body) = enqueued
    assert b"Content-Type: message/global-headers\r\n\r\nSubject: t\r\n" in utf8_body and utf8_notice.smtputf8
    assert b"Content-Type: text/rfc822-headers\r\n" in plain_body and not plain_notice.smtputf8
