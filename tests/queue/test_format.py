"""gateway/queue/format.py: the queue file codec, on bytes alone (round trip, the legacy format, corrupt input)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue.format import (
    FOOTER_LEN,
    ZEROED_FOOTER,
    NoTrailer,
    StaleSpare,
    decode_envelope,
    decode_message,
    decode_queue_file,
    encode_envelope,
    encode_queue_file,
    footer_sizes,
    holds_no_message,
    trailer,
)

BODY = b"Received: x\r\nSubject: t\r\n\r\nhello\r\n"


def envelope(qid: str = "7", size: int = len(BODY), **kw) -> Envelope:
    return Envelope(qid, int(qid), "<m@x>", "s@x.example", (Recipient("a@corp.example"), Recipient("b@corp.example")), 1.0, size, **kw)


def test_a_queue_file_is_the_body_the_envelope_json_and_a_footer_of_both_lengths():
    """The layout byte for byte: what queues written by every version since the trailer hold."""
    env = envelope()
    json_bytes = encode_envelope(env)
    data = encode_queue_file(BODY, env)
    assert data == BODY + json_bytes + b"\n" + b"#exgateway-envelope %012d %08d\n" % (len(BODY), len(json_bytes))
    assert data == BODY + trailer(json_bytes, len(BODY))
    assert footer_sizes(data[-FOOTER_LEN:], len(data)) == (len(BODY), len(json_bytes))


def test_round_trip_of_a_whole_queue_file():
    """decode_queue_file gives back the body and the envelope, DSN, SMTPUTF8 and per-recipient fields included."""
    env = Envelope(
        "12", 12, "<m@x>", "s@x.example",
        (Recipient("a@corp.example", RecipientState.DELIVERED, 2, "250 ok", "SUCCESS,FAILURE", "rfc822;a@corp.example"),
         Recipient("b@corp.example", RecipientState.PENDING, 1, "451 later")),
        5.5, len(BODY), client_ip="192.0.2.1", helo="scanner", connector="EXSERVER\\Default Frontend", attempts=3,
        next_attempt=99.0, dsn_ret="HDRS", dsn_envid="env-1", smtputf8=True,
    )
    assert decode_queue_file(encode_queue_file(BODY, env)) == (BODY, env)


@given(
    body=st.binary(max_size=2000),
    sender=st.text(max_size=40),
    subject_like=st.text(max_size=40),
    attempts=st.integers(min_value=0, max_value=10**6),
)
def test_round_trip_for_any_body_and_text(body, sender, subject_like, attempts):
    """Any body bytes (a footer-like line inside included) and any text in the envelope survive the codec."""
    body = body + b"#exgateway-envelope 000000000001 00000001\n" if attempts % 2 else body
    env = Envelope("3", 3, subject_like, sender, (Recipient("a@corp.example"),), 0.0, len(body), helo=subject_like, attempts=attempts)
    assert decode_queue_file(encode_queue_file(body, env)) == (body, env)


def test_fields_left_at_their_defaults_are_not_written():
    """A file without the DSN and SMTPUTF8 fields reads as before, in this version and the last."""
    plain = json.loads(encode_envelope(envelope()))
    assert not {"dsn_ret", "dsn_envid", "smtputf8"} & set(plain)
    assert all(set(r) == {"address", "state", "attempts", "last_reply"} for r in plain["recipients"])


def test_the_legacy_format_a_bare_body_beside_its_envelope_file_is_read():
    """Before queue files carried their envelope: no footer (NoTrailer), the envelope file alone says what the body is."""
    env = envelope("8")
    with pytest.raises(NoTrailer):
        footer_sizes(BODY[-FOOTER_LEN:], len(BODY))
    assert decode_message("8", None, len(BODY), encode_envelope(env)) == env


def test_an_envelope_file_wins_over_the_trailer():
    """After a delivery attempt the new state lives in <id>.json; the trailer keeps the first one."""
    first = envelope("9")
    later = first.with_results({"a@corp.example": (RecipientState.DELIVERED, "250 ok")}, 60.0)
    assert decode_message("9", encode_envelope(first), len(BODY), encode_envelope(later)) == later
    assert decode_message("9", encode_envelope(first), len(BODY), None) == first


def test_zeroed_and_empty_files_hold_no_message_and_a_message_file_does():
    data = encode_queue_file(BODY, envelope())
    assert holds_no_message(0, b"")
    assert holds_no_message(len(data), ZEROED_FOOTER)
    assert not holds_no_message(len(data), data[-FOOTER_LEN:])
    # Shorter than a footer and not empty: a message file cut short, not a spare.
    assert not holds_no_message(5, b"\0" * 5)
    zeroed = data[:-FOOTER_LEN] + ZEROED_FOOTER
    with pytest.raises(NoTrailer):
        decode_queue_file(zeroed)


def test_a_file_cut_short_anywhere_has_no_trailer():
    """A crash while writing leaves a prefix of the file: no prefix reads as a message."""
    data = encode_queue_file(BODY, envelope())
    for n in range(len(data)):
        with pytest.raises(NoTrailer):
            footer_sizes(data[:n][-FOOTER_LEN:], n)


@pytest.mark.parametrize(
    "footer",
    [
        b"#exgateway-envelopX 000000000035 00000200\n",
        b"#exgateway-envelope 00000000003x 00000200\n",
        b"#exgateway-envelope -00000000035 00000200\n",
        b"#exgateway-envelope 000000000035000000200\n",
        b"#exgateway-envelope 000000000036 00000200\n",  # does not add up to the length
    ],
)
def test_a_garbled_footer_is_no_trailer(footer):
    data = encode_queue_file(BODY, envelope())
    total = len(data)
    assert len(footer) == FOOTER_LEN
    with pytest.raises(NoTrailer):
        footer_sizes(footer, total)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"{}",
        b'{"version": 2}',
        json.dumps({**json.loads(encode_envelope(envelope())), "recipients": []}).encode(),
        json.dumps({**json.loads(encode_envelope(envelope())), "recipients": [{"address": "a@x"}]}).encode(),
        json.dumps({**json.loads(encode_envelope(envelope())), "recipients": [{"address": "a@x", "state": "lost", "attempts": 0}]}).encode(),
        json.dumps({**json.loads(encode_envelope(envelope())), "surprise": 1}).encode(),
        json.dumps({k: v for k, v in json.loads(encode_envelope(envelope())).items() if k != "sender"}).encode(),
    ],
)
def test_a_bad_envelope_is_a_value_error(raw):
    """Whatever is wrong with the JSON, the store sees one kind of error and sets the message aside."""
    with pytest.raises(ValueError):
        decode_envelope(raw)


def test_an_envelope_that_does_not_match_its_body_or_its_name_is_refused():
    env = envelope("5")
    with pytest.raises(ValueError, match="body has"):
        decode_message("5", encode_envelope(env), len(BODY) + 1, None)
    with pytest.raises(ValueError, match="queue id"):
        decode_message("6", None, len(BODY), encode_envelope(env))
    data = encode_queue_file(BODY + b"x", envelope("5"))
    with pytest.raises(ValueError, match="body has"):
        decode_queue_file(data)


def test_a_trailer_naming_another_message_without_an_envelope_file_is_a_stale_spare():
    """A reused file renamed before its zeroed footer reached the disk: a finished message, not a corrupt one."""
    with pytest.raises(StaleSpare) as caught:
        decode_message("20", encode_envelope(envelope("8")), len(BODY), None)
    assert str(caught.value) == "8"


# Written by the code before Envelope had typed fields (main at 12f5454, Envelope(extra={...}).to_json()
# and store.trailer), byte for byte: an intake message with every note set, a delivery notice, a journal report.
OLD_QUEUE_FILE = (
    b'Subject: Invoice\r\n\r\nhi\r\n{"attempts": 1, "client_ip": "192.0.2.7", "connector": "EXSERVER\\\\Client Frontend", '
    b'"dsn_envid": "e1", "dsn_ret": "HDRS", "extra": {"auth": "app@corp.example", "body": "8BITMIME", "delay_notified": true, '
    b'"dkim": "DKIM-Signature: v=1; a=rsa-sha256; d=corp.example; s=s1; b=abc", "dkim_local": true, "notice_failed": true, '
    b'"subject": "Invoice", "tls": "TLSv1.3 TLS_AES_256_GCM_SHA384 0D69", "via": "FRONTEND1"}, "helo": "scanner", '
    b'"internal_id": 1001, "message_id": "<a@b>", "next_attempt": 1700000600.0, "queue_id": "1001", "received_at": 1700000000.5, '
    b'"recipients": [{"address": "x@corp.example", "attempts": 1, "last_reply": "250 ok", "state": "delivered"}, '
    b'{"address": "y@partner.example", "attempts": 0, "last_reply": null, "notify": "FAILURE", "orcpt": "rfc822;y@partner.example", '
    b'"state": "pending"}], "sender": "app@corp.example", "size": 24, "version": 1}\n#exgateway-envelope 000000000024 00000862\n'
)
OLD_NOTICE = (
    b'{"attempts": 0, "client_ip": "", "connector": "DSN", "extra": {"kind": "failed", "reports_on": "1001", '
    b'"subject": "Undeliverable: Invoice"}, "helo": "", "internal_id": 1002, "message_id": "<1002.failed@hub>", '
    b'"next_attempt": 0.0, "queue_id": "1002", "received_at": 1700000700.0, "recipients": [{"address": "app@corp.example", '
    b'"attempts": 0, "last_reply": null, "state": "pending"}], "sender": "", "size": 5, "version": 1}'
)
OLD_JOURNAL = (
    b'{"attempts": 0, "client_ip": "", "connector": "Journal", "extra": {"journal_of": "1001", "subject": "Journal report: Invoice"}, '
    b'"helo": "", "internal_id": 1003, "message_id": "<j@hub>", "next_attempt": 0.0, "queue_id": "1003", '
    b'"received_at": 1700000800.0, "recipients": [{"address": "journal@corp.example", "attempts": 0, "last_reply": null, '
    b'"state": "pending"}], "sender": "", "size": 5, "version": 1}'
)


def test_a_queue_file_written_with_the_old_extra_bag_reads_into_typed_fields_and_writes_back_the_same_bytes():
    """
    Queues written before the typed fields still deliver after an upgrade,
    and files written now are the ones the previous version reads (the
    notes stay in the JSON's "extra" object): a rollback loses nothing.
    """
    body, env = decode_queue_file(OLD_QUEUE_FILE)
    assert body == b"Subject: Invoice\r\n\r\nhi\r\n"
    assert (env.auth, env.tls, env.via, env.subject, env.body_type) == (
        "app@corp.example", "TLSv1.3 TLS_AES_256_GCM_SHA384 0D69", "FRONTEND1", "Invoice", "8BITMIME",
    )
    assert env.dkim == "DKIM-Signature: v=1; a=rsa-sha256; d=corp.example; s=s1; b=abc" and env.dkim_local is True
    assert env.delay_notified is True and env.notice_failed is True
    assert (env.dsn_ret, env.dsn_envid, env.recipients[1].notify) == ("HDRS", "e1", "FAILURE")
    assert encode_queue_file(body, env) == OLD_QUEUE_FILE

    notice = decode_envelope(OLD_NOTICE)
    assert (notice.reports_on, notice.report_kind, notice.subject) == ("1001", "failed", "Undeliverable: Invoice")
    assert encode_envelope(notice) == OLD_NOTICE
    journal = decode_envelope(OLD_JOURNAL)
    assert (journal.journal_of, journal.subject) == ("1001", "Journal report: Invoice")
    assert encode_envelope(journal) == OLD_JOURNAL


def test_notes_left_unset_are_not_written_and_an_empty_extra_reads_as_none():
    env = envelope()
    assert json.loads(encode_envelope(env))["extra"] == {}
    assert decode_envelope(encode_envelope(env)) == env
    noted = envelope(auth="erp-app", delay_notified=True)
    assert json.loads(encode_envelope(noted))["extra"] == {"auth": "erp-app", "delay_notified": True}


@pytest.mark.parametrize("extra", [b'"auth"', b"[1]", b"null"])
def test_an_extra_that_is_no_object_is_a_bad_envelope(extra):
    raw = encode_envelope(envelope()).replace(b'"extra": {}', b'"extra": ' + extra)
    with pytest.raises(ValueError):
        decode_envelope(raw)


def test_a_note_at_the_top_level_is_not_the_stored_layout():
    """The notes live in "extra" only: a top-level "auth" is an unknown field, as any other."""
    data = json.loads(encode_envelope(envelope()))
    data["auth"] = "x"
    with pytest.raises(ValueError, match="unknown fields"):
        decode_envelope(json.dumps(data).encode())
