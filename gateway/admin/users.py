"""
`exgateway user add | set | remove | passwd | list`: the users file.

A password is read from a prompt (twice) or, with --password-stdin, from
the first line of standard input; never from the command line, where it
would sit in shell history and in every `ps`. A running gateway sees the
change at the next AUTH (the file is re-read when it changes).
"""

from __future__ import annotations

import dataclasses
import getpass
import sys

from gateway.admin.table import print_table
from gateway.auth.sendas import parse_pattern
from gateway.auth.users import UserRecord, UsersFile, UsersFileError, hash_password
from gateway.connectors import parse_range

NO_TERMINAL = ("exgateway: no terminal to ask for the password; pass it on standard input with --password-stdin, "
               "e.g. printf '%s\\n' \"$PASSWORD\" | exgateway user {action} NAME --password-stdin")


def _read_password(args) -> str | None:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            print(NO_TERMINAL.format(action=args.action), file=sys.stderr)
            return None
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Again: ")
        except EOFError:
            print(NO_TERMINAL.format(action=args.action), file=sys.stderr)
            return None
        if again != password:
            print("exgateway: the passwords differ", file=sys.stderr)
            return None
    if not password:
        print("exgateway: an empty password is not allowed", file=sys.stderr)
        return None
    return password


def _open(config) -> tuple[UsersFile, dict[str, UserRecord]] | None:
    users_file = UsersFile(config.auth.users_file)
    try:
        return users_file, users_file.load_strict()
    except (UsersFileError, OSError) as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return None


def _add(args, config) -> int:
    opened = _open(config)
    if opened is None:
        return 1
    users_file, users = opened
    if args.name.lower() in users:
        print(f"exgateway: {args.name!r} already exists (use `exgateway user passwd` or `remove`)", file=sys.stderr)
        return 1
    try:
        send_as = tuple(parse_pattern(p) for p in args.send_as or ())
        ranges = tuple(parse_range(r) for r in args.remote_ip or ())
    except ValueError as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return 2
    password = _read_password(args)
    if password is None:
        return 1
    record = UserRecord(args.name, hash_password(password), send_as, ranges)
    users_file.save([*users.values(), record])
    patterns = record.identity().send_as.patterns
    print(f"added {args.name} to {users_file.path}; may send as: {', '.join(patterns) or '(nothing yet: add --send-as)'}")
    return 0


def _existing(config, name: str) -> tuple[UsersFile, dict[str, UserRecord], UserRecord] | None:
    """The users file, its users and the one named, or None after saying why not."""
    opened = _open(config)
    if opened is None:
        return None
    users_file, users = opened
    record = users.get(name.lower())
    if record is None:
        print(f"exgateway: no user {name!r} in {users_file.path}", file=sys.stderr)
        return None
    return users_file, users, record


def _set(args, config) -> int:
    """Change what a user may send as, and from where; what is not given stays (an option with no value clears it)."""
    found = _existing(config, args.name)
    if found is None:
        return 1
    users_file, users, record = found
    if args.send_as is None and args.remote_ip is None:
        print("exgateway: nothing to change: give --send-as and/or --remote-ip", file=sys.stderr)
        return 2
    try:
        send_as = record.send_as if args.send_as is None else tuple(parse_pattern(p) for p in args.send_as)
        ranges = record.remote_ip_ranges if args.remote_ip is None else tuple(parse_range(r) for r in args.remote_ip)
    except ValueError as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return 2
    record = dataclasses.replace(record, send_as=send_as, remote_ip_ranges=ranges)
    users[args.name.lower()] = record
    users_file.save(list(users.values()))
    patterns = record.identity().send_as.patterns
    print(f"{record.name}: may send as {', '.join(patterns) or '(nothing)'}; "
          f"from {', '.join(map(str, record.remote_ip_ranges)) or 'anywhere'}")
    return 0


def _passwd(args, config) -> int:
    found = _existing(config, args.name)
    if found is None:
        return 1
    users_file, users, record = found
    password = _read_password(args)
    if password is None:
        return 1
    users[args.name.lower()] = dataclasses.replace(record, password_hash=hash_password(password))
    users_file.save(list(users.values()))
    print(f"password of {record.name} changed")
    return 0


def _remove(args, config) -> int:
    found = _existing(config, args.name)
    if found is None:
        return 1
    users_file, users, record = found
    del users[args.name.lower()]
    users_file.save(list(users.values()))
    print(f"removed {record.name}")
    return 0


def _list(args, config) -> int:
    opened = _open(config)
    if opened is None:
        return 1
    users_file, users = opened
    if not users:
        print(f"no users in {users_file.path}")
        return 0
    rows = [(u.name, ", ".join(u.identity().send_as.patterns) or "-", ", ".join(map(str, u.remote_ip_ranges)) or "any")
            for u in users.values()]
    print_table(("Name", "SendAs", "RemoteIPRanges"), rows)
    return 0


def add_commands(commands, common, with_config) -> None:
    user = commands.add_parser("user", help="local accounts for devices and apps (the users file)", parents=[common])
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user; the password is prompted for", parents=[common])
    add.add_argument("name", help="login name; if it is an address, the user may send as it")
    # extend: "--send-as a --send-as b" keeps both, as "--send-as a b" does.
    add.add_argument("--send-as", nargs="+", action="extend", metavar="PATTERN", help="more senders: address, *@domain, *@*.domain, <>")
    add.add_argument("--remote-ip", nargs="+", action="extend", metavar="RANGE", help="only from these addresses (IP, CIDR or a-b)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(run=with_config(_add))
    change = actions.add_parser("set", help="change a user's send-as addresses and networks", parents=[common])
    change.add_argument("name")
    change.add_argument("--send-as", nargs="*", action="extend", metavar="PATTERN",
                        help="the senders besides its own name (replaces the list; no value: none)")
    change.add_argument("--remote-ip", nargs="*", action="extend", metavar="RANGE",
                        help="the networks it may log in from (replaces the list; no value: anywhere)")
    change.set_defaults(run=with_config(_set))
    passwd = actions.add_parser("passwd", help="set a user's password", parents=[common])
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd.set_defaults(run=with_config(_passwd))
    remove = actions.add_parser("remove", help="remove a user", parents=[common])
    remove.add_argument("name")
    remove.set_defaults(run=with_config(_remove))
    actions.add_parser("list", help="Name, SendAs, RemoteIPRanges", parents=[common]).set_defaults(run=with_config(_list))


__all__ = ["add_commands"]
