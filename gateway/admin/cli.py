"""
The `exgateway` management command.

Every subcommand takes `--config FILE` and defaults to the same file
`twistd -n exgateway` uses (the packaged etc/exgateway.toml).

    exgateway config check [FILE]
"""

from __future__ import annotations

import argparse
import sys

from gateway.config import ConfigError, default_config_path, load_config


def _config_check(args: argparse.Namespace) -> int:
    path = args.file or args.config or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"{path}: {len(e.problems)} error(s)", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    enabled = [c for c in config.receive_connectors if c.enabled]
    print(f"{path}: OK")
    print(f"  server {config.server_name} ({config.fqdn})")
    for c in enabled:
        print(f"  receive connector '{c.identity}': {c.role} on {', '.join(map(str, c.bindings))}")
    print(f"  accepted domains: {', '.join(d.domain for d in config.accepted_domains) or '(none)'}")
    return 0


def parser() -> argparse.ArgumentParser:
    help_text = f"config file (default: {default_config_path()})"
    top = argparse.ArgumentParser(prog="exgateway", description="Manage an exgateway SMTP relay gateway.")
    top.add_argument("--config", metavar="FILE", help=help_text)
    # Subcommands accept --config too, without overwriting one given before them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help=help_text, default=argparse.SUPPRESS)
    commands = top.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="work with the configuration file", parents=[common])
    config_commands = config.add_subparsers(dest="action", required=True)
    check = config_commands.add_parser("check", help="validate a config file and list every error", parents=[common])
    check.add_argument("file", nargs="?", metavar="FILE", help="the file to check (default: --config, else the default)")
    check.set_defaults(run=_config_check)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
