"""
The message tracking log, in Exchange's MSGTRK format, and its search.

One CSV line per event of a message's life on this hub: RECEIVE (queued
from SMTP), DELIVER (to the mailbox store), SEND (to a send connector's
next hop), DEFER, FAIL, and DSN (a notice sent to the sender). Fields carry
Exchange's names and order, so Log Parser queries and the habits of
Get-MessageTrackingLog carry over; `exgateway track` searches the files.
(EXPAND does not occur: the gateway has no distribution groups to expand.)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.envelope import Envelope
from gateway.logs.rolling import RollingLog, csv_line, iso_time, restore

FIELDS = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context", "connector-id", "source",
    "event-id", "internal-message-id", "message-id", "recipient-address", "recipient-status", "total-bytes", "recipient-count",
    "related-recipient-address", "reference", "message-subject", "sender-address", "return-path", "message-info", "directionality",
)
PREFIX = "MSGTRK"


class TrackingLog(RollingLog):
    def __init__(
        self, directory: Path, clock, server_hostname: str, max_file_size: int = 10 * 1024 * 1024, max_age: float = 30 * 86400,
        max_directory_size: int | None = None,
    ) -> None:
        super().__init__(directory, PREFIX, "Message Tracking Log", ",".join(FIELDS), clock, max_file_size, max_age, max_directory_size)
        self.server_hostname = server_hostname

    def event(
        self, event_id: str, source: str, envelope: Envelope, recipients: list[str], statuses: Sequence[str] = (),
        connector_id: str = "", server_ip: str = "", source_context: str = "", related: str = "", reference: str = "",
    ) -> None:
        """One event; its line is made when the log is written (the envelope is immutable; the lists are the caller's to give away)."""
        self.record(
            self.clock.seconds(), _line, self.server_hostname, event_id, source, envelope, recipients, statuses,
            connector_id, server_ip, source_context, related, reference,
        )


def _line(
    now: float, server_hostname: str, event_id: str, source: str, envelope: Envelope, recipients: list[str], statuses,
    connector_id: str, server_ip: str, source_context: str, related: str, reference: str,
) -> str:
    auth, tls, via = envelope.auth, envelope.tls, envelope.via
    # In the order of FIELDS.
    values = (
        iso_time(now),
        envelope.client_ip,
        envelope.helo,
        server_ip,
        server_hostname,
        source_context,
        connector_id or envelope.connector,
        source,
        event_id,
        str(envelope.internal_id),
        envelope.message_id,
        ";".join(recipients),
        ";".join(s or "" for s in statuses),
        str(envelope.size),
        str(len(recipients)),
        related,
        reference,
        envelope.subject,
        envelope.sender,
        envelope.sender,
        ";".join(part for part in (f"AuthAs:{auth}" if auth else "", f"TLS:{tls.split()[0]}" if tls else "", f"Via:{via}" if via else "") if part),
        "Originating" if auth else "Incoming",
    )
    return csv_line(values) + "\r\n"


@dataclass(frozen=True)
class Query:
    sender: str | None = None
    recipient: str | None = None
    message_id: str | None = None
    event: str | None = None
    start: str | None = None  # ISO 8601 (UTC), compared as text: "2026-11-27" or "2026-11-27T03:00"
    end: str | None = None

    def matches(self, row: dict) -> bool:
        if self.sender and row["sender-address"].lower() != self.sender.lower():
            return False
        if self.recipient and self.recipient.lower() not in [r.lower() for r in row["recipient-address"].split(";")]:
            return False
        if self.message_id and row["message-id"].strip("<>") != self.message_id.strip("<>"):
            return False
        if self.event and row["event-id"].upper() != self.event.upper():
            return False
        if self.start and row["date-time"] < self.start:
            return False
        return not (self.end and row["date-time"] >= self.end)


def search(directory: Path, query: Query) -> list[dict]:
    """Every event in the tracking files under `directory` that matches, oldest first."""
    rows = []
    for path in sorted(Path(directory).glob(f"{PREFIX}*.LOG")):
        with open(path, encoding="utf-8", newline="") as f:
            lines = [line for line in f if not line.startswith("#")]
        for values in csv.reader(lines):
            if len(values) != len(FIELDS):
                continue
            row = dict(zip(FIELDS, [restore(v) for v in values], strict=True))
            if query.matches(row):
                rows.append(row)
    rows.sort(key=lambda r: r["date-time"])
    return rows


def inventory(directory: Path, connector: str | None = None, since: str | None = None) -> list[dict]:
    """
    Who relays through this node: one row per client address, authenticated
    user and receive connector, from the RECEIVE events: first and last seen,
    messages, recipients, and whether they came over TLS (all, some or none).
    """
    rows: dict[tuple[str, str, str], dict] = {}
    for event in search(directory, Query(event="RECEIVE", start=since)):
        if connector and connector.lower() not in (event["connector-id"].lower(), event["connector-id"].split("\\")[-1].lower()):
            continue
        info = dict(part.split(":", 1) for part in event["message-info"].split(";") if ":" in part)
        key = (event["client-ip"], info.get("AuthAs", ""), event["connector-id"])
        row = rows.setdefault(key, {"ClientIP": key[0], "User": key[1] or "-", "Connector": key[2], "FirstSeen": event["date-time"],
                                    "LastSeen": event["date-time"], "Messages": 0, "Recipients": 0, "_tls": set()})
        row["LastSeen"] = event["date-time"]
        row["Messages"] += 1
        row["Recipients"] += int(event["recipient-count"] or 0)
        row["_tls"].add("TLS" in info)
    out = []
    for row in sorted(rows.values(), key=lambda r: (r["Connector"], r["ClientIP"], r["User"])):
        tls = row.pop("_tls")
        row["TLS"] = "yes" if tls == {True} else "no" if tls == {False} else "some"
        out.append(row)
    return out
