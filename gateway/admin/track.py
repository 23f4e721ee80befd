"""
`exgateway track`: search the message tracking log, as Get-MessageTrackingLog does.

    exgateway track --sender app@corp.example --start 2026-11-27T03:00 --event FAIL
    exgateway track --message-id '<1795...@mail.corp.example>' --list

Prints Timestamp, EventId, Source, Sender, Recipients and MessageSubject
(Exchange's default view); `--list` prints every field of each event.
Times are UTC, ISO 8601 (`2026-11-27` or `2026-11-27T03:00`).

`exgateway clients [--connector NAME] [--since TIME]` answers the question
asked before retiring a connector: who still relays through it.
"""

from __future__ import annotations

import sys

from gateway.admin.table import print_table, printable
from gateway.logs.tracking import FIELDS, Query, inventory, search

COLUMNS = (("Timestamp", "date-time"), ("EventId", "event-id"), ("Source", "source"), ("Sender", "sender-address"),
           ("Recipients", "recipient-address"), ("MessageSubject", "message-subject"))


def _track(args, config) -> int:
    directory = config.message_tracking.directory
    if not directory.is_dir():
        print(f"no message tracking log in {directory}", file=sys.stderr)
        return 1
    query = Query(args.sender, args.recipient, args.message_id, args.event, args.start, args.end)
    rows = search(directory, query)
    if args.list:
        for row in rows:
            for name in FIELDS:
                print(f"{name:<26}: {printable(row[name])}")
            print()
        return 0
    if not rows:
        print("no matching events")
        return 0
    table = [tuple(row[key].replace(";", ", ") for _, key in COLUMNS) for row in rows]
    print_table(tuple(h for h, _ in COLUMNS), table, max_width=48)
    return 0


def _clients(args, config) -> int:
    directory = config.message_tracking.directory
    if not directory.is_dir():
        print(f"no message tracking log in {directory}", file=sys.stderr)
        return 1
    rows = inventory(directory, args.connector, args.since)
    if not rows:
        print("no clients seen")
        return 0
    columns = ("ClientIP", "User", "Connector", "FirstSeen", "LastSeen", "Messages", "Recipients", "TLS")
    print_table(columns, [tuple(str(r[c]) for c in columns) for r in rows])
    return 0


def add_commands(commands, common, with_config) -> None:
    clients = commands.add_parser(
        "clients", help="every client address and user that relayed through this node, per connector", parents=[common]
    )
    clients.add_argument("--connector", metavar="NAME", help="one receive connector (name or SERVER\\Name)")
    clients.add_argument("--since", metavar="TIME", help="UTC, e.g. 2026-11-01")
    clients.set_defaults(run=with_config(_clients))
    track = commands.add_parser("track", help="search the message tracking log (as Get-MessageTrackingLog)", parents=[common])
    track.add_argument("--sender", metavar="ADDR")
    track.add_argument("--recipient", metavar="ADDR")
    track.add_argument("--message-id", metavar="ID")
    track.add_argument("--event", metavar="EVENT", help="RECEIVE, DELIVER, SEND, DEFER, FAIL or DSN")
    track.add_argument("--start", metavar="TIME", help="UTC, e.g. 2026-11-27T03:00")
    track.add_argument("--end", metavar="TIME", help="UTC, exclusive")
    track.add_argument("--list", action="store_true", help="every field of each event")
    track.set_defaults(run=with_config(_track))


__all__ = ["add_commands"]
