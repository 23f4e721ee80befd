"""
`exgateway dkim new-key | list`: the DKIM key store (gateway/sign/keys.py).

`new-key` makes a key under a new selector and prints the TXT record to
publish; the key signs nothing until `[dkim] selectors` names it. `list`
shows every key, whether it is the active selector of its domain, and its
age, so an old selector can be retired once its replacement has taken over.
"""

from __future__ import annotations

import sys
import time

from gateway.admin.table import print_table
from gateway.sign.keys import KEY_TYPES, KeyStore, record


def _new_key(args, config) -> int:
    store = KeyStore(config.dkim.directory)
    try:
        value = store.new_key(args.domain, args.selector, args.type)
    except FileExistsError:
        print(f"error: {store.path(args.domain, args.selector)} exists; a new key takes a new selector", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    domain = args.domain.lower()
    print(f"wrote {store.path(domain, args.selector)} (mode 0600)")
    print("Publish this TXT record in DNS, then set in [dkim]:")
    print(f'  selectors = {{ "{domain}" = "{args.selector}" }}')
    print()
    print(record(domain, args.selector, value))
    return 0


def _age(seconds: float) -> str:
    days = int(seconds // 86400)
    return f"{days}d" if days else f"{int(seconds // 3600)}h"


def _list(args, config) -> int:
    active = config.dkim.selectors
    now = time.time()
    rows = [
        (k.domain, k.selector, k.kind, "yes" if active.get(k.domain) == k.selector else "no",
         time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(k.created)), _age(now - k.created))
        for k in KeyStore(config.dkim.directory).keys()  # noqa: SIM118 (a key store, not a dict)
    ]
    print_table(("Domain", "Selector", "Type", "Active", "Created", "Age"), rows)
    return 0


def add_commands(commands, common, with_config) -> None:
    dkim = commands.add_parser("dkim", help="DKIM signing keys", parents=[common])
    actions = dkim.add_subparsers(dest="action", required=True)
    new = actions.add_parser("new-key", help="make a key for a domain under a new selector; print its DNS TXT record", parents=[common])
    new.add_argument("--domain", required=True)
    new.add_argument("--selector", required=True, help="e.g. s202612 (a new one for each key: rotation is by selector)")
    new.add_argument("--type", choices=KEY_TYPES, default="rsa", help="rsa (2048 bits, default) or ed25519")
    new.set_defaults(run=with_config(_new_key))
    actions.add_parser("list", help="Domain, Selector, Type, Active, Created, Age", parents=[common]).set_defaults(run=with_config(_list))


__all__ = ["add_commands"]
