"""
Journaling (Exchange journal rules, Postfix always_bcc): a copy of each
message a rule selects goes to a journal recipient, an archive.

`[[journal_rules]]` name the journal recipient, the scope and the form:

- scope: with neither `senders` nor `recipients` every message; otherwise
  a message whose envelope sender matches one of `senders`, or one of whose
  recipients matches one of `recipients` (patterns as `user@domain`,
  `*@domain`, `*@*.domain` or `*`): Exchange's "messages sent or received
  by" these;
- `report = "envelope"` (the default, Exchange's envelope journaling): a
  new message from the gateway (null sender) to the journal recipient,
  saying who sent it, to whom (Bcc recipients included: the archive must
  know) and its Message-ID, with the original attached as message/rfc822;
- `report = "bcc"` (always_bcc): the journal recipient is added to the
  message's envelope, never to its header; NOTIFY=NEVER, so a journal that
  fails never sends the sender a non-delivery report naming it.

The original recipients get exactly what they would have got. A journal
copy is an ordinary queued recipient or message: a journal target that is
down is retried like any other. An envelope report is written beside the
original as it streams in (a second queue file: the original's bytes as
queued, after the report's own header and text part), and committed with
it before the 250, so neither is held whole in memory and neither can be
acknowledged without the other being on disk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email.header import Header

from gateway.address import valid_domain
from gateway.dates import rfc5322
from gateway.envelope import Envelope, Recipient

REPORTS = ("envelope", "bcc")
RULE_KEYS = {"name", "journal_recipient", "senders", "recipients", "report"}
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+$")
# Anything that could break out of a header line or the report's text.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def check_pattern(pattern) -> str:
    """`*`, `user@domain`, `*@domain` or `*@*.domain`; ValueError otherwise."""
    if pattern == "*":
        return pattern
    if not isinstance(pattern, str) or pattern.count("@") != 1:
        raise ValueError(f"{pattern!r} is not *, user@domain, *@domain or *@*.domain")
    local, domain = pattern.split("@")
    bare = domain.removeprefix("*.")
    if (local != "*" and not _LOCAL.match(local)) or not valid_domain(bare):
        raise ValueError(f"{pattern!r} is not *, user@domain, *@domain or *@*.domain")
    return pattern.lower()


def matches(pattern: str, address: str) -> bool:
    if pattern == "*":
        return True
    local, _, domain = address.lower().rpartition("@")
    p_local, _, p_domain = pattern.partition("@")
    if p_local != "*" and p_local != local:
        return False
    if p_domain.startswith("*."):
        return domain.endswith(p_domain[1:])
    return domain == p_domain


@dataclass(frozen=True)
class JournalRule:
    name: str
    journal_recipient: str
    report: str = "envelope"
    senders: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()

    def applies(self, sender: str, recipients) -> bool:
        if not self.senders and not self.recipients:
            return True
        return any(matches(p, sender) for p in self.senders if sender) or any(
            matches(p, r) for p in self.recipients for r in recipients
        )


def read_rules(reader, raw: dict, route) -> tuple[JournalRule, ...]:
    """
    The [[journal_rules]] of a config file, problems reported through the
    config reader. `route(address)` tells whether the journal recipient has
    a route (an accepted domain or a send connector): a journal that could
    never be delivered is a config error, not a silent loss.
    """
    data = raw.get("journal_rules", [])
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        reader.problem("journal_rules", "must be an array of tables ([[journal_rules]])")
        return ()
    rules = []
    for i, d in enumerate(data):
        where = f"journal_rules[{i}]"
        reader.table(d, where, RULE_KEYS)
        target = d.get("journal_recipient")
        if not isinstance(target, str) or target.count("@") != 1 or "*" in target:
            reader.problem(f"{where}.journal_recipient", "required: one address (user@domain)")
            continue
        if not route(target):
            reader.problem(f"{where}.journal_recipient", f"no route to {target}: not an accepted domain and no send connector matches it")
            continue
        report = d.get("report", "envelope")
        if report not in REPORTS:
            reader.problem(f"{where}.report", f"{report!r} is not one of {', '.join(REPORTS)}")
            continue
        senders = reader.items(d, where, "senders", check_pattern, ())
        recipients = reader.items(d, where, "recipients", check_pattern, ())
        rules.append(JournalRule(str(d.get("name", target)), target, report, senders, recipients))
    return tuple(rules)


class Journal:
    """The journal rules of one configuration."""

    def __init__(self, rules: tuple[JournalRule, ...] = (), random=os.urandom) -> None:
        self.rules = rules
        self.random = random

    def targets(self, sender: str, recipients) -> tuple[list[str], list[str]]:
        """(addresses to add as Bcc recipients, addresses to send an envelope report to) for a message."""
        bcc: list[str] = []
        reports: list[str] = []
        for rule in self.rules:
            if rule.applies(sender, recipients):
                chosen = bcc if rule.report == "bcc" else reports
                if rule.journal_recipient not in chosen:
                    chosen.append(rule.journal_recipient)
        return bcc, reports


def _safe(text: str) -> str:
    return _UNSAFE.sub("?", text)


def _header_text(text: str) -> str:
    """A header field's text: ASCII as it is, anything else as RFC 2047 encoded words (the report goes to any next hop)."""
    text = _safe(text)
    return text if text.isascii() else Header(text, "utf-8").encode(linesep="\r\n")


class JournalReport:
    """
    An envelope journal report being written into its own queue entry while
    the original streams in: `start` writes the report's header and text
    part once the original's Message-ID is known, `write` copies the
    original's bytes as they are queued, `finish` closes the attachment and
    gives the report's envelope.
    """

    def __init__(self, entry, journal_recipients: list[str], fqdn: str, random=os.urandom) -> None:
        self.entry = entry
        self.journal_recipients = journal_recipients
        self.fqdn = fqdn
        # Random, so no message can hold the boundary that ends its attachment and smuggle parts into the archive.
        self.boundary = "=_exgw-journal-" + random(16).hex()
        self.message_id = f"<{entry.queue_id}.journal@{fqdn}>"
        self.started = False

    def start(self, now: float, sender: str, recipients, message_id: str, subject: str | None) -> None:
        lines = [
            f"From: Journal <postmaster@{self.fqdn}>",
            "To: " + ", ".join(f"<{r}>" for r in self.journal_recipients),
            "Subject: " + _header_text("Journal report: " + (subject or "")[:200]),
            f"Date: {rfc5322(now)}",
            f"Message-ID: {self.message_id}",
            "MIME-Version: 1.0",
            "X-MS-Journal-Report:",
            f'Content-Type: multipart/mixed; boundary="{self.boundary}"',
            "",
            f"--{self.boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            f"Sender: {_safe(sender) or '<>'}",
            f"Subject: {_safe(subject or '')}",
            f"Message-Id: {_safe(message_id)}",
            *(f"To: {_safe(r)}" for r in recipients),
            "",
            f"--{self.boundary}",
            "Content-Type: message/rfc822",
            "",
            "",
        ]
        self.entry.write("\r\n".join(lines).encode("utf-8"))
        self.started = True

    def write(self, data: bytes) -> None:
        self.entry.write(data)

    def finish(self, now: float, internal_id: int, original: Envelope) -> Envelope:
        self.entry.write(f"\r\n--{self.boundary}--\r\n".encode("ascii"))
        return Envelope(
            queue_id=self.entry.queue_id,
            internal_id=internal_id,
            message_id=self.message_id,
            sender="",
            recipients=tuple(Recipient(r) for r in self.journal_recipients),
            received_at=now,
            size=self.entry.size,
            connector="Journal",
            smtputf8=original.smtputf8,
            journal_of=original.queue_id,
            subject="Journal report: " + original.subject,
        )


def routable(accepted_domains, send_connectors):
    """route(address) for read_rules: whether the configuration has a route for an address."""
    from gateway.domains import AcceptedDomains
    from gateway.route.router import Router

    router = Router(AcceptedDomains(accepted_domains), tuple(send_connectors))
    return lambda address: router.route_address(address) is not None
