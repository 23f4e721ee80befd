"""
The queue file format, as a pure codec: bytes in, bytes or values out, no
file system (gateway/queue/store.py does the reading, writing and syncing).

A queue file (`<id>.eml`) is the message's body, then a trailer: the
envelope as JSON, a newline, and a fixed-size footer giving the body's and
the envelope's lengths. The footer is written last and checked against the
file's length, so a file cut short anywhere (the process died while
writing it) has no valid footer and was never acknowledged. A footer of
zeros marks a file that holds no message any more (a delivered message's
file kept for reuse, gateway/queue/spares.py); an empty file is a new
spare. After a delivery attempt the envelope may live in `<id>.json`
beside the queue file, which then wins over the trailer.

The legacy format, from before queue files carried their envelope: a bare
body (no footer) beside its `<id>.json`. decode_message still reads it.
"""

from __future__ import annotations

import json
from dataclasses import fields

from gateway.envelope import Envelope, Recipient, RecipientState

FORMAT_VERSION = 1

# How a queue directory names them: `<id>.eml` the queue file, `<id>.json` a
# newer envelope, `<id>.json.tmp` one being written.
BODY = ".eml"
ENVELOPE = ".json"
TMP = ".tmp"

# The footer: magic, body length, envelope length.
FOOTER_MAGIC = b"#exgateway-envelope"
_FOOTER = b"%s %012d %08d\n"
FOOTER_LEN = len(_FOOTER % (FOOTER_MAGIC, 0, 0))
# What a retired file's footer is overwritten with: no longer a message.
ZEROED_FOOTER = bytes(FOOTER_LEN)


class NoTrailer(ValueError):
    """A queue file without a complete trailer: unfinished, or a body in the legacy format."""


class StaleSpare(ValueError):
    """
    A queue file whose trailer names another queue id and that has no
    envelope file: a reused spare renamed on disk while its zeroed footer
    was not yet, still holding a finished message. Not a message.
    """


# --- the trailer ---------------------------------------------------------------


def trailer(envelope_json: bytes, body_size: int) -> bytes:
    """What follows the body in a queue file: the envelope, a newline, the footer."""
    return envelope_json + b"\n" + _FOOTER % (FOOTER_MAGIC, body_size, len(envelope_json))


def footer_sizes(footer: bytes, total: int) -> tuple[int, int]:
    """
    (body size, envelope JSON size) from the last FOOTER_LEN bytes of a
    queue file `total` bytes long; NoTrailer if they are no footer or do
    not add up to the file's length.
    """
    if total < FOOTER_LEN or len(footer) != FOOTER_LEN:
        raise NoTrailer("no envelope after the body")
    parts = footer.split()
    if len(parts) != 3 or parts[0] != FOOTER_MAGIC or not (parts[1].isdigit() and parts[2].isdigit()):
        raise NoTrailer("no envelope after the body")
    body_size, json_size = int(parts[1]), int(parts[2])
    if body_size + json_size + 1 + FOOTER_LEN != total:
        raise NoTrailer("no envelope after the body")
    return body_size, json_size


def holds_no_message(total: int, footer: bytes) -> bool:
    """
    Whether a queue file `total` bytes long, ending in `footer` (its last
    FOOTER_LEN bytes, or all of it if shorter), is a spare: empty, or
    ending in a zeroed footer. A message's file always ends in its footer.
    """
    if total == 0:
        return True
    return total >= FOOTER_LEN and not any(footer)


def encode_queue_file(body: bytes, envelope: Envelope) -> bytes:
    """A whole queue file: the body, then its trailer."""
    return body + trailer(encode_envelope(envelope), len(body))


def decode_queue_file(data: bytes) -> tuple[bytes, Envelope]:
    """(body, envelope) from a whole queue file's bytes; NoTrailer, or ValueError for a bad envelope."""
    body_size, json_size = footer_sizes(data[-FOOTER_LEN:], len(data))
    envelope = decode_envelope(data[body_size : body_size + json_size])
    if envelope.size != body_size:
        raise ValueError(f"body has {body_size} bytes, envelope says {envelope.size}")
    return data[:body_size], envelope


def decode_message(queue_id: str, trailer_json: bytes | None, body_size: int, envelope_file: bytes | None) -> Envelope:
    """
    The envelope of the message stored under `queue_id`, from what its
    files hold: the trailer's JSON (None if the queue file has none, the
    legacy format) with the body's size, and the envelope file's bytes
    (None if there is none), which win over the trailer. StaleSpare for a
    reused file that still holds a finished message; ValueError for a
    message that cannot be trusted (set aside, not delivered).
    """
    raw = envelope_file if envelope_file is not None else trailer_json
    if raw is None:
        raise NoTrailer("neither a trailer nor an envelope file")
    envelope = decode_envelope(raw)
    if envelope.queue_id != queue_id:
        if envelope_file is None:
            raise StaleSpare(envelope.queue_id)
        raise ValueError(f"envelope names queue id {envelope.queue_id!r}")
    if body_size != envelope.size:
        raise ValueError(f"body has {body_size} bytes, envelope says {envelope.size}")
    return envelope


# --- the envelope as JSON ----------------------------------------------------


def encode_envelope(envelope: Envelope) -> bytes:
    """
    The envelope as stored. Built by hand: dataclasses.asdict deep-copies
    every field and cost about 0.14 ms per envelope on the hub's hot path.
    """
    data = {f: getattr(envelope, f) for f in _ENVELOPE_FIELDS}
    data["version"] = FORMAT_VERSION
    # DSN and SMTPUTF8 fields only when set: a file without them reads as before, in this version and the last.
    for key in _DSN_FIELDS:
        if not data[key]:
            del data[key]
    data["extra"] = {key: value for name, key in _EXTRA_FIELDS if (value := getattr(envelope, name))}
    data["recipients"] = [_recipient_json(r) for r in envelope.recipients]
    return _ENCODER.encode(data).encode("utf-8")


def decode_envelope(raw: bytes) -> Envelope:
    """Parse a stored envelope; ValueError if it is not a complete one."""
    try:
        data = json.loads(raw)
        if data.pop("version") != FORMAT_VERSION:
            raise ValueError("unknown envelope version")
        recipients = tuple(
            Recipient(
                r["address"], RecipientState(r["state"]), int(r["attempts"]), r.get("last_reply"), r.get("notify", ""),
                r.get("orcpt", ""),
            )
            for r in data.pop("recipients")
        )
        if not recipients:
            raise ValueError("envelope without recipients")
        extra = data.pop("extra", {})
        unknown = data.keys() - _STORED_FIELDS
        if unknown or not isinstance(extra, dict):
            raise ValueError(f"bad envelope: unknown fields {sorted(unknown)}" if unknown else "bad envelope: extra is no object")
        for name, key in _EXTRA_FIELDS:
            if key in extra:
                data[name] = _EXTRA_TYPES[name](extra[key])
        return Envelope(recipients=recipients, **data)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"bad envelope: {e!r}") from None


def _recipient_json(r: Recipient) -> dict:
    data = {"address": r.address, "state": r.state.value, "attempts": r.attempts, "last_reply": r.last_reply}
    if r.notify:
        data["notify"] = r.notify
    if r.orcpt:
        data["orcpt"] = r.orcpt
    return data


# The envelope's optional notes, stored in the JSON's "extra" object under
# these keys, and only when set: the layout every earlier version wrote
# (when Envelope.extra was a free-form dict) and reads.
_EXTRA_FIELDS = (
    ("auth", "auth"), ("tls", "tls"), ("via", "via"), ("subject", "subject"), ("body_type", "body"), ("dkim", "dkim"),
    ("dkim_local", "dkim_local"), ("delay_notified", "delay_notified"), ("notice_failed", "notice_failed"),
    ("reports_on", "reports_on"), ("report_kind", "kind"), ("journal_of", "journal_of"),
)
_EXTRA_TYPES = {f.name: bool if f.type in ("bool", bool) else str for f in fields(Envelope) if f.name in dict(_EXTRA_FIELDS)}
_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope) if f.name != "recipients" and f.name not in _EXTRA_TYPES)
_STORED_FIELDS = frozenset(_ENVELOPE_FIELDS)
_DSN_FIELDS = ("dsn_ret", "dsn_envid", "smtputf8")
# json.dumps(..., sort_keys=True) builds an encoder per call; this one is made once.
_ENCODER = json.JSONEncoder(sort_keys=True)
