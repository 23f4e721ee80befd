"""
The `exgateway` management command.

Every subcommand takes `--config FILE` and otherwise finds the file the
way `twistd -n exgateway` does (gateway/configpath.py): $EXGATEWAY_CONFIG,
/etc/exgateway/exgateway.toml, ./exgateway.toml, the packaged sample. The
commands that talk to the running gateway find it through that file's
var_dir (gateway/admin/daemon.py).

    exgateway config check [FILE] | init [DIR] [--var-dir PATH]
    exgateway receive-connector list | show NAME | test --client-ip IP --port N [--mail-from A] [--rcpt A ...]
    exgateway reload [--pidfile FILE | --pid PID]
    exgateway certificate list | new-self-signed --subject CN=... [--san ...] | import FILE
    exgateway user add NAME [--send-as ...] [--remote-ip ...] | set NAME [--send-as ...] [--remote-ip ...] | passwd NAME | remove NAME | list
    exgateway queue list | messages [QUEUE] | retry QUEUE | suspend QUEUE | resume QUEUE
    exgateway message remove ID [--with-ndr] | export ID [-o FILE]
    exgateway drain | undrain
    exgateway clients [--connector NAME] [--since TIME]
    exgateway track [--sender A] [--recipient A] [--message-id ID] [--event E] [--start T] [--end T] [--list]
    exgateway route test --sender A --rcpt B [...] [--connector NAME] [--user U]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from pathlib import Path

from gateway.admin import certificates, queues, routetest, track, users
from gateway.admin import dkim as dkim_keys
from gateway.admin.daemon import Unreachable, ask_each
from gateway.admin.explain import explain
from gateway.admin.table import print_table
from gateway.auth.node import external_authoritative_warnings
from gateway.config import ConfigError, load_config, path_problems
from gateway.configpath import ENVIRONMENT, SYSTEM_CONFIG, find_config, is_packaged_sample, packaged_sample
from gateway.deliver.oauth import credential_problems
from gateway.tls.check import certificate_problems


def _config_check(args: argparse.Namespace) -> int:
    path = find_config(args.file or args.config).path
    try:
        config = load_config(path)
        # What start-up would refuse (directories it cannot make, certificates the store does not hold)
        # and OAuth credential files that delivery could not read.
        problems = path_problems(config) + certificate_problems(config) + credential_problems(config)
        if problems:
            raise ConfigError(problems)
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
    for warning in external_authoritative_warnings(config):
        print(f"  warning: {warning}")
    return 0


def _config_init(args: argparse.Namespace) -> int:
    """An editable copy of the packaged sample, optionally with its var_dir set."""
    target = Path(args.directory).absolute() / "exgateway.toml"
    if target.exists():
        print(f"exgateway: {target} exists; not overwritten (edit it, or remove it first)", file=sys.stderr)
        return 1
    text = packaged_sample().read_text()
    if args.var_dir:
        text, count = re.subn(r'(?m)^var_dir = ".*"$', f"var_dir = {json.dumps(args.var_dir)}", text, count=1)
        assert count == 1, "the packaged sample has a var_dir line"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as e:
        print(f"exgateway: cannot write {target}: {e.strerror}", file=sys.stderr)
        return 1
    var_dir = load_config(target).var_dir
    print(f"wrote {target} (var_dir {var_dir})")
    found = find_config(None).path
    if found == target and target == SYSTEM_CONFIG:
        print("twistd and exgateway find it from any directory; restart a running gateway to use it")
    elif found == target:
        print(f"twistd and exgateway run in {target.parent} find it (restart a running gateway to use it); "
              f"from elsewhere give --config {target} or export {ENVIRONMENT}={target}")
    else:
        print(f"use it with --config {target}, or export {ENVIRONMENT}={target}"
              + (f", or copy it to {SYSTEM_CONFIG}" if target != SYSTEM_CONFIG else ""))
    return 0


def _load(args: argparse.Namespace):
    path = find_config(args.config).path
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"{path}: {len(e.problems)} error(s)", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _with_config(command):
    """A subcommand that needs the parsed config: load it (errors to stderr, exit 1) and pass it on."""

    def run(args: argparse.Namespace) -> int:
        config = _load(args)
        if config is None:
            return 1
        if is_packaged_sample(config.path) and not config.var_dir.is_dir():
            # The sample's var_dir is the current directory's: from elsewhere these commands would read (or make)
            # a users file, certificates or logs that no gateway uses.
            print(f"exgateway: {config.var_dir} does not exist: the packaged sample config puts var_dir in the current "
                  "directory; run this where twistd runs (after its first start), or give --config FILE or set "
                  f"{ENVIRONMENT}", file=sys.stderr)
            return 1
        return command(args, config)

    return run


def _connector_list(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 1
    rows = [(c.identity, "{" + ", ".join(map(str, c.bindings)) + "}", str(c.enabled)) for c in config.receive_connectors]
    print_table(("Identity", "Bindings", "Enabled"), rows)
    return 0


def _unlimited(value: int | None) -> str:
    return "Unlimited" if value is None else str(value)


def _connector_show(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 1
    matches = [c for c in config.receive_connectors if args.name in (c.name, c.identity)]
    if not matches:
        print(f"no receive connector named {args.name!r} in {config.path}", file=sys.stderr)
        return 1
    c = matches[0]
    fields = [
        ("Identity", c.identity),
        ("Role", c.role),
        ("Bindings", ", ".join(map(str, c.bindings))),
        ("RemoteIPRanges", ", ".join(map(str, c.remote_ip_ranges))),
        ("PermissionGroups", ", ".join(sorted(g.value for g in c.permission_groups)) or "None"),
        ("AuthMechanism", ", ".join(sorted(c.auth_mechanisms)) or "None"),
        ("RequireTLS", str(c.require_tls)),
        ("ImplicitTLS", str(c.implicit_tls)),
        ("TlsCertificateName", c.tls_certificate_name or "(by Fqdn)"),
        ("ExtendedRightsGranted", ", ".join(sorted(f"{p.value}: {r.value}" for p, r in c.granted)) or "None"),
        ("ExtendedRightsWithheld", ", ".join(sorted(f"{p.value}: {r.value}" for p, r in c.withheld)) or "None"),
        ("Banner", c.banner or "(default)"),
        ("Fqdn", c.fqdn),
        ("MaxMessageSize", f"{c.max_message_size} bytes"),
        ("MaxRecipientsPerMessage", str(c.max_recipients)),
        ("ConnectionInactivityTimeout", f"{c.connection_inactivity_timeout:g} s"),
        ("ConnectionTimeout", f"{c.connection_timeout:g} s"),
        ("MaxHeaderSize", f"{c.max_header_size} bytes"),
        ("MaxInboundConnection", _unlimited(c.max_inbound_connection)),
        ("MaxInboundConnectionPerSource", _unlimited(c.max_inbound_connection_per_source)),
        ("MessageRateLimit", _unlimited(c.message_rate_limit)),
        ("MessageRateSource", c.message_rate_source),
        ("MaxProtocolErrors", str(c.max_protocol_errors)),
        ("TarpitInterval", f"{c.tarpit_interval:g} s"),
        ("ProtocolLoggingLevel", c.protocol_logging_level),
        ("PipeliningEnabled", str(c.pipelining_enabled)),
        ("EightBitMimeEnabled", str(c.eight_bit_mime_enabled)),
        ("SizeEnabled", str(c.size_enabled)),
        ("EnhancedStatusCodesEnabled", str(c.enhanced_status_codes_enabled)),
        ("ChunkingEnabled", str(c.chunking_enabled)),
        ("Enabled", str(c.enabled)),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key:<{width}} : {value}")
    return 0


def _offline_recipients(config):
    """Recipient validation from the users file and list file; the directory is not asked from the command line."""
    import time
    from types import SimpleNamespace

    from gateway.policy.recipients import build_recipient_validator

    return build_recipient_validator(config, SimpleNamespace(seconds=time.time), directory=False)


def _connector_test(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 1
    try:
        lines = explain(config, args.client_ip, args.port, args.mail_from, tuple(args.rcpt or ()), args.user,
                        _offline_recipients(config))
    except ValueError as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return 2
    if args.rcpt and "ldap" in config.recipient_validation.sources:
        lines.append("  (recipient validation: the directory is not asked by this command; the hub asks it at RCPT)")
    print("\n".join(lines))
    return 0


def _reload(args: argparse.Namespace) -> int:
    """
    Check the file, then have the running gateway re-read it and relay what it
    said: applied (and what waits for a restart), or refused with its errors.
    """
    config = _load(args)
    if config is None:
        print("not reloaded: the running gateway keeps its configuration", file=sys.stderr)
        return 1
    if args.pid or args.pidfile:
        try:
            pid = args.pid or int(Path(args.pidfile).read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as e:
            print(f"exgateway: cannot signal the gateway ({e})", file=sys.stderr)
            return 1
        print(f"sent SIGHUP to {pid}; its log says what was applied")
        return 0
    try:
        # A gateway re-reads the file it started with: one started with another file must be restarted instead.
        for _, _status, state in ask_each(config, "GET", "/state"):
            if state.get("config") and state["config"] != str(config.path):
                print(f"exgateway: not reloaded: the running gateway reads {state['config']}, not {config.path}; "
                      "restart it to use this file", file=sys.stderr)
                return 1
        answers = ask_each(config, "POST", "/reload")
    except Unreachable as e:
        print(f"exgateway: not reloaded: {e}", file=sys.stderr)
        return 1
    failed = False
    for _, status, outcome in answers:
        where = outcome.get("path") or str(config.path)
        if status == 200:
            print(f"reloaded {where}")
            if outcome.get("restart_needed"):
                print(f"  changes to {', '.join(outcome['restart_needed'])} take effect at the next restart")
            continue
        failed = True
        errors = outcome.get("errors") or [outcome.get("error", f"HTTP {status}")]
        print(f"exgateway: the gateway refused {where}; it keeps its running configuration:", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
    return 1 if failed else 0


def _drain(args, config) -> int:
    """
    Drain or put back in service every process that shares this var_dir (the
    state is a file they all read), through the running gateway; with none
    running, the file alone (it starts drained), if this var_dir is one.
    """
    from gateway.admin.health import NodeState

    draining = args.command == "drain"
    try:
        ask_each(config, "POST", "/drain" if draining else "/undrain")
        running = True
    except Unreachable as e:
        if not config.var_dir.is_dir():
            print(f"exgateway: not {'drained' if draining else 'undrained'}: {e}", file=sys.stderr)
            return 1
        running = False
        state = NodeState(config.var_dir / "draining")
        state.drain() if draining else state.undrain()
    note = "" if running else f" (no gateway running on {config.var_dir}: it starts so)"
    if draining:
        print(f"{config.server_name} draining{note}: new connections get 421 4.3.2 Service not active, /health/ready answers 503, "
              "sessions in progress finish and the queue keeps delivering")
    else:
        print(f"{config.server_name} in service{note}")
    return 0


def parser() -> argparse.ArgumentParser:
    help_text = f"config file (default: ${ENVIRONMENT}, else {SYSTEM_CONFIG}, else ./exgateway.toml, else the packaged sample)"
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
    init = config_commands.add_parser("init", help="write an editable copy of the sample config to DIR/exgateway.toml", parents=[common])
    init.add_argument("directory", nargs="?", default=".", metavar="DIR", help="where (default: the current directory)")
    init.add_argument("--var-dir", metavar="PATH", help="the copy's var_dir (default: var, beside the file)")
    init.set_defaults(run=_config_init)

    rc = commands.add_parser("receive-connector", help="inspect receive connectors", parents=[common])
    rc_commands = rc.add_subparsers(dest="action", required=True)
    rc_commands.add_parser("list", help="Identity, Bindings, Enabled (as Get-ReceiveConnector)", parents=[common]).set_defaults(run=_connector_list)
    show = rc_commands.add_parser("show", help="every property of one connector", parents=[common])
    show.add_argument("name", help="connector name or SERVER\\Name identity")
    show.set_defaults(run=_connector_show)
    test = rc_commands.add_parser(
        "test", help="which connector takes a connection, with what rights, and the replies MAIL and RCPT would get", parents=[common]
    )
    test.add_argument("--client-ip", required=True, help="the client's address (IPv4 or IPv6)")
    test.add_argument("--port", required=True, type=int, help="the port it connects to")
    test.add_argument("--mail-from", metavar="ADDR", help="envelope sender to check")
    test.add_argument("--rcpt", metavar="ADDR", nargs="+", action="extend", help="recipients to check (--rcpt A B, or --rcpt A --rcpt B)")
    test.add_argument("--user", metavar="NAME", help="as if this user (from the users file) had authenticated")
    test.set_defaults(run=_connector_test)

    reload = commands.add_parser(
        "reload", help="check the config file, then have the running gateway apply it (SIGHUP)", parents=[common]
    )
    reload.add_argument("--pidfile", help="send SIGHUP to the process in this pid file instead (its log says what happened)")
    reload.add_argument("--pid", type=int, help="send SIGHUP to this process instead")
    reload.set_defaults(run=_reload)
    certificates.add_commands(commands, common, _with_config)
    users.add_commands(commands, common, _with_config)
    dkim_keys.add_commands(commands, common, _with_config)
    track.add_commands(commands, common, _with_config)
    routetest.add_commands(commands, common, _with_config)
    queues.add_commands(commands, common, _with_config)
    commands.add_parser("drain", help="take this node out of service, gently (as Set-ServerComponentState -State Draining)",
                        parents=[common]).set_defaults(run=_with_config(_drain))
    commands.add_parser("undrain", help="put it back in service", parents=[common]).set_defaults(run=_with_config(_drain))
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
