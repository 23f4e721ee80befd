"""
Value types for a queued message: the envelope and per-recipient state.

The envelope is what the queue writes as JSON next to the body; it is the
commit marker, so it carries the body's size and a loader refuses an
envelope whose body does not match. State is per recipient: a message with
one delivered and one deferred recipient retries only the second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from enum import Enum

FORMAT_VERSION = 1


class RecipientState(str, Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self is not RecipientState.PENDING


@dataclass(frozen=True)
class Recipient:
    address: str
    state: RecipientState = RecipientState.PENDING
    attempts: int = 0
    last_reply: str | None = None
    # RFC 3461 NOTIFY ("NEVER" or SUCCESS,FAILURE,DELAY; "" = not given) and
    # ORCPT ("rfc822;address", decoded), from gateway/dsnparams.py.
    notify: str = ""
    orcpt: str = ""


class Outcome(str):
    """
    A delivered recipient's reply, saying which success notice (RFC 3461)
    is ours to send if the recipient asked for one: "delivered" (a local
    mailbox), "relayed" (a next hop without DSN, which will send none), or
    "" (a next hop with DSN, which got NOTIFY and reports itself). Stored
    as the plain reply text.
    """

    dsn_action: str

    def __new__(cls, text: str, dsn_action: str = "") -> "Outcome":
        outcome = super().__new__(cls, text)
        outcome.dsn_action = dsn_action
        return outcome


@dataclass(frozen=True)
class Envelope:
    queue_id: str
    internal_id: int
    message_id: str
    sender: str
    recipients: tuple[Recipient, ...]
    received_at: float
    size: int
    client_ip: str = ""
    helo: str = ""
    connector: str = ""
    attempts: int = 0
    next_attempt: float = 0.0
    extra: dict = field(default_factory=dict)
    # RFC 3461 RET ("FULL", "HDRS" or "") and ENVID (decoded), for our notices and DSN-capable next hops.
    dsn_ret: str = ""
    dsn_envid: str = ""
    # The message needs SMTPUTF8 (RFC 6531): a UTF-8 address or header, taken in a SMTPUTF8 transaction.
    smtputf8: bool = False

    @property
    def pending(self) -> tuple[Recipient, ...]:
        return tuple(r for r in self.recipients if r.state is RecipientState.PENDING)

    @property
    def done(self) -> bool:
        return all(r.state.final for r in self.recipients)

    def with_results(self, results: dict[str, tuple[RecipientState, str | None]], next_attempt: float) -> "Envelope":
        """A copy with the outcome of one delivery attempt applied."""
        recipients = []
        for r in self.recipients:
            if r.address in results:
                state, reply = results[r.address]
                r = replace(r, state=state, attempts=r.attempts + 1, last_reply=reply)
            recipients.append(r)
        return replace(self, recipients=tuple(recipients), attempts=self.attempts + 1, next_attempt=next_attempt)

    def to_json(self) -> bytes:
        # Built by hand: dataclasses.asdict deep-copies every field and cost
        # about 0.14 ms per envelope on the hub's hot path.
        data = {f: getattr(self, f) for f in _ENVELOPE_FIELDS}
        data["version"] = FORMAT_VERSION
        # DSN and SMTPUTF8 fields only when set: a file without them reads as before, in this version and the last.
        for key in _DSN_FIELDS:
            if not data[key]:
                del data[key]
        data["recipients"] = [_recipient_json(r) for r in self.recipients]
        return _ENCODER.encode(data).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "Envelope":
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
            return cls(recipients=recipients, **data)
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"bad envelope: {e!r}") from None


def _recipient_json(r: Recipient) -> dict:
    data = {"address": r.address, "state": r.state.value, "attempts": r.attempts, "last_reply": r.last_reply}
    if r.notify:
        data["notify"] = r.notify
    if r.orcpt:
        data["orcpt"] = r.orcpt
    return data


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope) if f.name != "recipients")
_DSN_FIELDS = ("dsn_ret", "dsn_envid", "smtputf8")
# json.dumps(..., sort_keys=True) builds an encoder per call; this one is made once.
_ENCODER = json.JSONEncoder(sort_keys=True)
