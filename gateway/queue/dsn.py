"""
Delivery status notifications (RFC 3464): non-delivery reports, delay
notices, and the success notices a sender asks for with NOTIFY=SUCCESS
(RFC 3461: "delivered" into a mailbox, "relayed" to a next hop without DSN).

A notice is a multipart/report message from the null sender to the
envelope sender: a human part saying which recipients failed (or are
delayed) and the next hop's reply, a message/delivery-status part (one
per-recipient block each, with Final-Recipient, Action, Status and the
remote Diagnostic-Code), and the original message's header section as
text/rfc822-headers. Never sent to the null sender, so a notice about a
notice cannot happen: notices themselves have the null sender.
"""

from __future__ import annotations

import re

from gateway.dates import rfc5322
from gateway.envelope import Envelope, Recipient

HEADER_LIMIT = 64 * 1024
# RET=FULL returns the whole message in a non-delivery report up to this size;
# a bigger one gets its headers only (the report is built in memory).
FULL_RETURN_LIMIT = 1024 * 1024
TITLES = {"failed": "Undeliverable: ", "delayed": "Delivery delayed: ", "delivered": "Delivered: ", "relayed": "Relayed: "}
_OPENING = {
    "failed": ["Your message {id} could not be delivered to these recipients:"],
    "delayed": [
        "Your message {id} has not been delivered yet to these recipients.",
        "The gateway keeps trying; you need not send it again. You will be told if it fails for good.",
    ],
    "delivered": ["Your message {id} was delivered to these recipients' mailboxes:"],
    "relayed": [
        "Your message {id} was passed on to these recipients' next hop, which does not report",
        "delivery status: you may get no further notice about it.",
    ],
}
_STATUS = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")


def read_headers(path, size: int | None = None, limit: int = HEADER_LIMIT) -> bytes:
    """The original message's header section (up to the first empty line), at most `limit` bytes of its `size`-byte body."""
    with open(path, "rb") as f:
        data = f.read(limit if size is None else min(limit, size))
    end = data.find(b"\r\n\r\n")
    return data[: end + 2] if end >= 0 else data


def read_message(path, size: int) -> bytes:
    """The whole original message (RET=FULL), which the caller has checked is at most FULL_RETURN_LIMIT."""
    with open(path, "rb") as f:
        return f.read(size)


def status_of(reply: str | None, default: str) -> str:
    """The enhanced status code in a reply ("550 5.1.1 ..." -> "5.1.1"), or a default from its class."""
    if reply:
        m = _STATUS.match(reply)
        if m:
            return m.group(1)
        if reply[:1] in "45":
            return f"{reply[0]}.0.0"
    return default


def _ascii(text: str) -> str:
    """Header-safe: one line, printable ASCII."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def build_dsn(
    kind: str, envelope: Envelope, recipients: list[Recipient], headers: bytes, fqdn: str, now: float, boundary: str,
    retry_until: float | None = None, message_id: str = "", full: bool = False,
) -> bytes:
    """
    `kind` is "failed" (a non-delivery report), "delayed" (a delay notice,
    saying until when it retries), "delivered" or "relayed" (success
    notices, RFC 3461 NOTIFY=SUCCESS). `full`: `headers` is the whole
    message (RET=FULL), returned as message/rfc822.
    """
    failed = kind == "failed"
    subject = _subject(headers)
    title = TITLES[kind] + (subject or "(no subject)")
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{fqdn}>",
        f"To: <{envelope.sender}>",
        f"Subject: {_ascii(title)[:200]}",
        f"Date: {rfc5322(now)}",
        f"Message-ID: {message_id or f'<dsn.{envelope.internal_id}.{kind}@{fqdn}>'}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a delivery status notification in MIME format.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
    ]
    lines += [line.format(id=envelope.message_id) for line in _OPENING[kind]]
    lines.append("")
    for r in recipients:
        lines.append(f"  <{r.address}>: {_ascii(r.last_reply or 'no reply recorded')}")
    lines += [
        "",
        f"Reporting server: {fqdn}",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {fqdn}",
        *([f"Original-Envelope-Id: {envelope.dsn_envid}"] if envelope.dsn_envid else []),
        f"X-Exgateway-Queue-ID: {envelope.queue_id}",
        f"Arrival-Date: {rfc5322(envelope.received_at)}",
    ]
    for r in recipients:
        lines += [
            "",
            *([f"Original-Recipient: {r.orcpt.replace(';', '; ', 1)}"] if r.orcpt else []),
            f"Final-Recipient: rfc822; {r.address}",
            f"Action: {kind}",
            f"Status: {status_of(r.last_reply, {'failed': '5.0.0', 'delayed': '4.0.0'}.get(kind, '2.0.0'))}",
        ]
        if r.last_reply and kind != "delivered":
            lines.append(f"Diagnostic-Code: smtp; {_ascii(r.last_reply)}")
        lines.append(f"Last-Attempt-Date: {rfc5322(now)}")
        if not failed and retry_until is not None:
            lines.append(f"Will-Retry-Until: {rfc5322(retry_until)}")
    # An internationalised original (SMTPUTF8, UTF-8 headers) comes back as RFC 6533's global types.
    returned = ("message/global" if full else "message/global-headers") if envelope.smtputf8 else (
        "message/rfc822" if full else "text/rfc822-headers"
    )
    lines += ["", f"--{boundary}", f"Content-Type: {returned}", ""]
    # Every line made header-safe here, whatever field it carries: a Message-ID,
    # an address or a reply with a non-ASCII byte or a line break must cost a
    # "?" in the notice, not the notice (and with it the message's settling).
    text = "\r\n".join([_ascii(line) for line in lines]).encode("ascii") + b"\r\n"
    original = headers if headers.endswith(b"\r\n") or not headers else headers + b"\r\n"
    return text + original + f"\r\n--{boundary}--\r\n".encode("ascii")


def _subject(headers: bytes) -> str:
    m = re.search(rb"(?im)^subject:[ \t]*(.*(?:\r\n[ \t].*)*)", headers)
    if not m:
        return ""
    return re.sub(r"\s+", " ", m.group(1).decode("ascii", "replace")).strip()
