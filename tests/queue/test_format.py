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
