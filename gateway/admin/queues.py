"""
`exgateway queue list | messages [QUEUE] | retry QUEUE | suspend QUEUE | resume QUEUE`
and `exgateway message remove ID [--with-ndr] | export ID`: the running hub's
queue, through the admin API on its UNIX socket (see gateway/admin/api.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import urllib.parse

from gateway.admin.table import print_table


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def call(config, method: str, path: str, **params) -> tuple[int, bytes]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    conn = _UnixConnection(str(config.admin_socket))
    try:
        conn.request(method, path + (f"?{query}" if query else ""))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _request(config, method: str, path: str, **params):
    """The decoded JSON answer, or None after printing why there is none."""
    try:
        status, body = call(config, method, path, **params)
    except OSError as e:
        print(f"exgateway: cannot reach the gateway at {config.admin_socket}: {e.strerror or e} (is the hub running?)", file=sys.stderr)
        return None
    data = json.loads(body)
    if status != 200:
        print(f"exgateway: {data.get('error', status)}", file=sys.stderr)
        return None
    return data


def _table(rows: list[dict], columns: tuple[str, ...]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [tuple(str(r[c]) if not isinstance(r[c], list) else ", ".join(r[c]) for c in columns) for r in rows]
    print_table(columns, cells, max_width=60)


def _list(args, config) -> int:
    data = _request(config, "GET", "/queues")
    if data is None:
        return 1
    _table(data, ("Identity", "DeliveryType", "Status", "MessageCount", "NextHopDomain", "LastError"))
    return 0


def _messages(args, config) -> int:
    data = _request(config, "GET", "/messages", queue=args.queue)
    if data is None:
        return 1
    _table(data, ("Identity", "FromAddress", "Status", "Size", "Queue", "Subject", "LastError"))
    return 0


def _queue_action(action: str):
    def run(args, config) -> int:
        data = _request(config, "POST", f"/queues/{action}", queue=args.queue)
        if data is None:
            return 1
        print(f"{args.queue}: {data.get('status') or str(data.get('retried')) + ' message(s) retried now'}")
        return 0

    return run


def _remove(args, config) -> int:
    data = _request(config, "POST", "/messages/remove", id=args.id, ndr="1" if args.with_ndr else None)
    if data is None:
        return 1
    print(f"removed {args.id}" + (" (the sender gets a non-delivery report)" if args.with_ndr else ""))
    return 0


def _export(args, config) -> int:
    try:
        status, body = call(config, "GET", "/messages/export", id=args.id)
    except OSError as e:
        print(f"exgateway: cannot reach the gateway at {config.admin_socket}: {e.strerror or e}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"exgateway: {json.loads(body).get('error')}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "wb") as f:
            f.write(body)
    else:
        sys.stdout.buffer.write(body)
    return 0


def add_commands(commands, common, with_config) -> None:
    queue = commands.add_parser("queue", help="the running hub's queues (as Get-Queue / Get-Message)", parents=[common])
    actions = queue.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Identity, DeliveryType, Status, MessageCount, NextHopDomain, LastError", parents=[common]).set_defaults(
        run=with_config(_list))
    messages = actions.add_parser("messages", help="the messages in one queue, or in all", parents=[common])
    messages.add_argument("queue", nargs="?", help="a queue name as `queue list` shows it (without SERVER\\)")
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
