"""
Delivery status notification parameters (RFC 3461): RET and ENVID on MAIL,
NOTIFY and ORCPT on RCPT.

Parsed once, on the way in (the receive side takes them off the parameter
dict that gateway/address.py parsed); stored with the queued message (RET
and ENVID on the envelope, NOTIFY and ORCPT per recipient); honoured by our
own notices (gateway/queue/notify.py) and passed on to a next hop only where
it advertises DSN (gateway/deliver/capabilities.py).

They are accepted whether or not the client saw DSN in our EHLO reply
(PHPMailer sends NOTIFY= unasked), and a malformed one gets
`501 5.5.4 Invalid arguments`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import Reply, SMTPError

# RFC 3461 4.4: ENVID is at most 100 characters; 5.2 ORCPT at most 500.
MAX_ENVID = 100
MAX_ORCPT = 500
NOTIFY_KEYWORDS = ("SUCCESS", "FAILURE", "DELAY")
_XTEXT = re.compile(r"^(?:[!-*,-<>-~]|\+[0-9A-F]{2})*$")
_ADDR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


@dataclass(frozen=True)
class MailDSN:
    """RET ("FULL", "HDRS" or "" when not given) and ENVID (decoded; "" when not given)."""

    ret: str = ""
    envid: str = ""


@dataclass(frozen=True)
class RecipientDSN:
    """NOTIFY ("NEVER", or SUCCESS/FAILURE/DELAY joined by commas; "" when not given) and ORCPT ("type;decoded address")."""

    notify: str = ""
    orcpt: str = ""


def _bad(reason: str) -> SMTPError:
    return SMTPError(Reply.BAD_SYNTAX, reason=reason)


def decode_xtext(value: str, what: str) -> str:
    """Strict xtext (RFC 3461 4): printable ASCII but "+" and "=", and "+XX" with upper-case hex."""
    if not _XTEXT.match(value):
        raise _bad(f"{what} is not xtext: {value!r}")
    raw = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    return raw.encode("latin-1").decode("utf-8", "replace")


def encode_xtext(value: str) -> str:
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in value.encode("utf-8")
    )


def take_mail_dsn(params: dict[str, str | None]) -> MailDSN | None:
    """Remove RET and ENVID from MAIL's parameters and check them; None if neither was given."""
    if "RET" not in params and "ENVID" not in params:
        return None
    had_ret, had_envid = "RET" in params, "ENVID" in params
    ret = params.pop("RET", None)
    envid = params.pop("ENVID", None)
    dsn_ret = ""
    if had_ret:
        if ret is None or ret.upper() not in ("FULL", "HDRS"):
            raise _bad(f"RET={ret!r}: FULL or HDRS")
        dsn_ret = ret.upper()
    dsn_envid = ""
    if had_envid:
        if not envid:
            raise _bad("ENVID without a value")
        if len(envid) > MAX_ENVID:
            raise _bad("ENVID longer than 100 characters")
        dsn_envid = decode_xtext(envid, "ENVID")
        if not all(32 <= ord(c) < 127 for c in dsn_envid):
            raise _bad("ENVID is not printable ASCII")
    return MailDSN(dsn_ret, dsn_envid)


def take_rcpt_dsn(params: dict[str, str | None]) -> RecipientDSN | None:
    """Remove NOTIFY and ORCPT from RCPT's parameters and check them; None if neither was given."""
    if "NOTIFY" not in params and "ORCPT" not in params:
        return None
    had_notify, had_orcpt = "NOTIFY" in params, "ORCPT" in params
    notify = params.pop("NOTIFY", None)
    orcpt = params.pop("ORCPT", None)
    dsn_notify = ""
    if had_notify:
        words = [w.upper() for w in (notify or "").split(",")]
        if words == ["NEVER"]:
            dsn_notify = "NEVER"
        elif not words or any(w not in NOTIFY_KEYWORDS for w in words) or len(set(words)) != len(words):
            raise _bad(f"NOTIFY={notify!r}: NEVER, or SUCCESS, FAILURE, DELAY separated by commas")
        else:
            dsn_notify = ",".join(w for w in NOTIFY_KEYWORDS if w in words)
    dsn_orcpt = ""
    if had_orcpt:
        value = orcpt or ""
        addr_type, semicolon, address = value.partition(";")
        if not semicolon or not _ADDR_TYPE.match(addr_type) or not address or len(value) > MAX_ORCPT:
            raise _bad(f"ORCPT={orcpt!r}: addr-type;xtext")
        dsn_orcpt = f"{addr_type.lower()};{decode_xtext(address, 'ORCPT')}"
    return RecipientDSN(dsn_notify, dsn_orcpt)


def wants(notify: str, kind: str) -> bool:
    """
    Whether a recipient's NOTIFY asks for a notice of `kind` ("failed",
    "delayed", "delivered", "relayed"). Without NOTIFY: failures and delays,
    never success (RFC 3461 4.1).
    """
    words = notify.split(",") if notify else ["FAILURE", "DELAY"]
    return {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS", "relayed": "SUCCESS", "expanded": "SUCCESS"}[kind] in words


def mail_parameters(ret: str, envid: str) -> list[str]:
    """RET and ENVID as a next hop with DSN is to get them."""
    return ([f"RET={ret}"] if ret else []) + ([f"ENVID={encode_xtext(envid)}"] if envid else [])


def rcpt_parameters(notify: str, orcpt: str) -> list[str]:
    """NOTIFY and ORCPT as a next hop with DSN is to get them."""
    params = [f"NOTIFY={notify}"] if notify else []
    if orcpt:
        addr_type, _, address = orcpt.partition(";")
        params.append(f"ORCPT={addr_type};{encode_xtext(address)}")
    return params
