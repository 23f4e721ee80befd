"""
`exgateway queue list | messages [QUEUE] | retry QUEUE | suspend QUEUE | resume QUEUE`
and `exgateway message remove ID [--with-ndr] | export ID`: the running hub's
queue, through the admin API on its UNIX socket (see gateway/admin/api.py).

A node with several workers has a queue per worker, each behind its own
socket (gateway/workers.py): the commands ask every worker and show one
node, as an admin thinks of it. A queue's count is the sum, a message is
found wherever it is, an action goes to every worker that has the queue.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import urllib.parse

from gateway.admin.daemon import hint
from gateway.admin.table import print_table
from gateway.workers import admin_socket


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(socket_path, method: str, path: str, timeout: float = 30.0, **params) -> tuple[int, bytes]:
    """One request to one process's admin socket: (HTTP status, body)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    conn = _UnixConnection(str(socket_path), timeout)
    try:
        conn.request(method, path + (f"?{query}" if query else ""))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _ask_all(config, method: str, path: str, **params):
    """(status, decoded answer) from every worker, or None after printing why a worker could not be reached."""
    answers = []
    for socket_path in [admin_socket(config.admin_socket, w) for w in range(config.workers)]:
        try:
            status, body = call(socket_path, method, path, **params)
        except OSError as e:
            print(f"exgateway: no gateway answers at {socket_path} ({e.strerror or e}); {hint(config)}", file=sys.stderr)
            return None
        answers.append((status, body))
    return answers


def _request_all(config, method: str, path: str, **params):
    """Every worker's decoded JSON answer, or None after printing why there is none."""
    answers = _ask_all(config, method, path, **params)
    if answers is None:
        return None
    data = [json.loads(body) for _, body in answers]
    if any(status != 200 for status, _ in answers):
        failed = next(d for (status, _), d in zip(answers, data, strict=True) if status != 200)
        print(f"exgateway: {failed.get('error')}", file=sys.stderr)
        return None
    return data


def _first_found(config, method: str, path: str, **params):
    """The answer of the worker that has the message (a 404 from the others is expected), or None after printing why."""
    answers = _ask_all(config, method, path, **params)
    if answers is None:
        return None
    for status, body in answers:  # noqa: B007 (the answer that ended the loop is read after it)
        if status != 404:
            break
    if status != 200:
        print(f"exgateway: {json.loads(body).get('error', status)}", file=sys.stderr)
        return None
    return body


STATUS_ORDER = ("Ready", "Retry", "Active", "Suspended")


def merge_queues(per_worker: list[list[dict]]) -> list[dict]:
    """One row per queue for the node: counts summed; the status that most needs an admin's eye; the latest error."""
    merged: dict[str, dict] = {}
    for rows in per_worker:
        for row in rows:
            seen = merged.get(row["Identity"])
            if seen is None:
                merged[row["Identity"]] = dict(row)
                continue
            seen["MessageCount"] += row["MessageCount"]
            seen["Status"] = max(seen["Status"], row["Status"], key=STATUS_ORDER.index)
            seen["LastError"] = seen["LastError"] or row["LastError"]
            retries = [t for t in (seen.get("NextRetryTime"), row.get("NextRetryTime")) if t]
            seen["NextRetryTime"] = min(retries) if retries else ""
    return [merged[k] for k in sorted(merged)]


def _table(rows: list[dict], columns: tuple[str, ...]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [tuple(str(r[c]) if not isinstance(r[c], list) else ", ".join(r[c]) for c in columns) for r in rows]
    print_table(columns, cells, max_width=60)


def _list(args, config) -> int:
    data = _request_all(config, "GET", "/queues")
    if data is None:
        return 1
    _table(merge_queues(data), ("Identity", "DeliveryType", "Status", "MessageCount", "NextHopDomain", "NextRetryTime", "LastError"))
    return 0


def _messages(args, config) -> int:
    data = _request_all(config, "GET", "/messages", queue=queue_name(args.queue, config.server_name) if args.queue else None)
    if data is None:
        return 1
    rows = sorted((row for rows in data for row in rows), key=lambda r: int(r["Identity"]) if r["Identity"].isdigit() else 0)
    _table(rows, ("Identity", "FromAddress", "Status", "Size", "Queue", "Subject", "LastError"))
    return 0


def queue_name(text: str, server_name: str) -> str:
    """A queue as given: its name, or its Identity as `queue list` prints it (SERVER\\name)."""
    prefix = server_name + "\\"
    return text[len(prefix):] if text.upper().startswith(prefix.upper()) else text


def _queue_action(action: str):
    def run(args, config) -> int:
        args.queue = queue_name(args.queue, config.server_name)
        answers = _ask_all(config, "POST", f"/queues/{action}", queue=args.queue)
        if answers is None:
            return 1
        done = [json.loads(body) for status, body in answers if status == 200]
        if not done:
            print(f"exgateway: {json.loads(answers[0][1]).get('error')}", file=sys.stderr)
            return 1
        if action in ("suspend", "resume"):
            # A worker with no message for the queue yet holds (or releases) it too, for the mail it takes next.
            for worker, (status, _) in enumerate(answers):
                if status == 404:
                    call(admin_socket(config.admin_socket, worker), "POST", f"/queues/{action}", queue=args.queue, also="1")
        if action == "suspend":
            print(f"{args.queue}: Suspended")
        else:
            print(f"{args.queue}: {sum(d.get('retried', 0) for d in done)} message(s) retried now")
        return 0

    return run


def _remove(args, config) -> int:
    if _first_found(config, "POST", "/messages/remove", id=args.id, ndr="1" if args.with_ndr else None) is None:
        return 1
    print(f"removed {args.id}" + (" (the sender gets a non-delivery report)" if args.with_ndr else ""))
    return 0


def _export(args, config) -> int:
    body = _first_found(config, "GET", "/messages/export", id=args.id)
    if body is None:
        return 1
    if args.output:
        # A message is mail: readable by the admin who exported it only, whatever the umask; never written through a symlink.
        try:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as f:
                f.write(body)
        except OSError as e:
            print(f"exgateway: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
            return 1
    else:
        sys.stdout.buffer.write(body)
    return 0


def add_commands(commands, common, with_config) -> None:
    queue = commands.add_parser("queue", help="the running hub's queues (as Get-Queue / Get-Message)", parents=[common])
    actions = queue.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Identity, DeliveryType, Status, MessageCount, NextHopDomain, NextRetryTime, LastError", parents=[common]).set_defaults(
        run=with_config(_list))
    messages = actions.add_parser("messages", help="the messages in one queue, or in all", parents=[common])
    messages.add_argument("queue", nargs="?", help="a queue's Identity as `queue list` shows it (SERVER\\ may be left out)")
    messages.set_defaults(run=with_config(_messages))
    for action, text in (("retry", "attempt its messages now"), ("suspend", "hold its messages"), ("resume", "release and attempt now")):
        p = actions.add_parser(action, help=text, parents=[common])
        p.add_argument("queue")
        p.set_defaults(run=with_config(_queue_action(action)))

    message = commands.add_parser("message", help="one queued message", parents=[common])
    m_actions = message.add_subparsers(dest="action", required=True)
    remove = m_actions.add_parser("remove", help="delete it from the queue", parents=[common])
    remove.add_argument("id")
    remove.add_argument("--with-ndr", action="store_true", help="send the sender a non-delivery report")
    remove.set_defaults(run=with_config(_remove))
    export = m_actions.add_parser("export", help="the raw message, as queued", parents=[common])
    export.add_argument("id")
    export.add_argument("-o", "--output", metavar="FILE")
    export.set_defaults(run=with_config(_export))


__all__ = ["add_commands", "call"]
