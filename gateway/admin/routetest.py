"""
`exgateway route test --sender A --rcpt B [--connector NAME] [--user U]`:
which send connector and smart host(s) each recipient would take, and why.

Before routing it applies the `[[rewrite]]` rules with the hub's own
Rewriter (gateway/rewrite.py), in intake's order: MAIL FROM by the outbound
rules, each RCPT TO by the inbound rules before it is validated and routed,
and says which rule rewrote what. As in intake (and in the scheduler,
which routes from the queued envelope), the source conditions see the
sender after rewriting: `source_senders` matches the rewritten sender.

It runs the hub's own Router (route/router.py) on the given source, then
lists every enabled send connector with its verdict: the address space that
matched or not, the source conditions (route/source.py) that matched or
not, and which one won on specificity, source or cost. So an admin who adds
a connector for the scanners can check, before reloading, that the scanners
take it and nobody else does.
"""

from __future__ import annotations

import sys

from gateway.address import NULL, parse_mailbox
from gateway.admin.explain import _route_line
from gateway.config import Config
from gateway.domains import AcceptedDomains
from gateway.errors import SMTPError
from gateway.rewrite import Rewriter
from gateway.route.router import Router, _specificity
from gateway.route.source import RouteSource, describe_source, source_score


def _connector_identity(config: Config, name: str) -> str:
    """A receive connector given by name or SERVER\\Name, as the envelope records it (its identity)."""
    for c in config.receive_connectors:
        if name.lower() in (c.name.lower(), c.identity.lower()):
            return c.identity
    raise ValueError(f"no receive connector {name!r} (`exgateway receive-connector list` shows them)")


def _next_hop(connector) -> str:
    if connector.dns_routing:
        return f"DNS MX of the recipient's domain, port {connector.port}"
    hosts = ", ".join(map(str, connector.smart_hosts))
    auth = connector.smart_host_auth
    if auth == "None":
        return f"smart hosts {hosts}"
    return f"smart hosts {hosts} (AUTH {auth} as {connector.auth_user})"


def _verdicts(router: Router, domain: str, source: RouteSource, chosen) -> list[str]:
    out = []
    width = max((len(c.name) for c in router.send_connectors), default=0)
    for c in router.send_connectors:
        spaces = [(s, _specificity(s, domain)) for s in c.address_spaces]
        matched = [(s, m) for s, m in spaces if m is not None]
        scoped = source_score(c, source)
        if not matched:
            verdict = f"address spaces {', '.join(c.address_spaces)} do not match {domain}"
        elif scoped is None:
            verdict = f"address space {max(matched, key=lambda x: x[1])[0]} matches; source does not: {describe_source(c, source)}"
        else:
            space = max(matched, key=lambda x: x[1])[0]
            scope = "any source" if scoped == (0, 0) else f"source matches {describe_source(c, source)}"
            verdict = f"address space {space} matches, {scope}, cost {c.cost}"
            verdict += "  <- chosen" if c is chosen else "; lost: a more specific address space, a closer source or a lower cost won"
        out.append(f"    {c.name:<{width}}  {verdict}")
    return out


def _rewritten(label: str, original, rewritten, rule) -> list[str]:
    """The rewrite line for one address, or none when no rule changed it."""
    if rule is None or rewritten == original:
        return []
    return [f"{label}: {original} -> {rewritten} (rule {rule})"]


def route_test(config: Config, sender: str, rcpts: tuple[str, ...], connector: str | None = None, user: str | None = None,
               recipient_exists=None) -> list[str]:
    """The report, as lines. ValueError for an unknown receive connector."""
    identity = _connector_identity(config, connector) if connector else ""
    router = Router(AcceptedDomains(config.accepted_domains), config.send_connectors, recipient_exists)
    rewriter = Rewriter(config.rewrite)
    out = [f"From <{sender}> via {identity or '(any receive connector)'}" + (f" as {user}" if user else "") + ":"]
    original = None
    try:
        original = parse_mailbox(sender, sender=True) if sender else NULL
    except SMTPError as e:
        out.append(f"  sender <{sender}>: not an address ({' '.join(e.reply.lines())})")
    else:
        out.extend(_rewritten("  sender rewritten", original, rewriter.sender(original), rewriter.sender_rule(original)))
    # As intake and the scheduler do: the source is the rewritten sender (an unparsable one is routed as given).
    rewritten_sender = sender if original is None else str(rewriter.sender(original))
    source = RouteSource(rewritten_sender, identity, user or "")
    for rcpt in rcpts:
        try:
            original = parse_mailbox(rcpt)
        except SMTPError as e:
            out.append(f"  RCPT <{rcpt}>: not an address ({' '.join(e.reply.lines())})")
            continue
        # As intake does: rewrite first, then validate and route the rewritten address.
        recipient = rewriter.recipient(original)
        decision = router.decide(recipient, source)
        out.append(f"  RCPT <{rcpt}>:")
        out.extend(_rewritten("      rewritten", original, recipient, rewriter.recipient_rule(original)))
        out.append(_route_line(decision))
        hop = decision.hop
        if hop is not None and hop.is_mailbox:
            delivery = config.mailbox
            where = f"next hop {delivery.next_hop}" if delivery.delivery == "smtp" else f"Maildir under {delivery.maildir}"
            out.append(f"      next hop: mailbox delivery, {where}")
        elif hop is not None and hop.connector is not None:
            out.append(f"      next hop: {_next_hop(hop.connector)}")
        if (hop is None or not hop.is_mailbox) and not recipient.literal:
            out.append("      send connectors:")
            out.extend("    " + line for line in _verdicts(router, recipient.domain, source, hop.connector if hop is not None else None))
    return out


def _run(args, config: Config) -> int:
    try:
        lines = route_test(config, args.sender, tuple(args.rcpt), args.connector, args.user)
    except ValueError as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def add_commands(commands, common, with_config) -> None:
    route = commands.add_parser("route", help="how the hub routes mail", parents=[common])
    actions = route.add_subparsers(dest="action", required=True)
    test = actions.add_parser(
        "test", help="which send connector and smart host(s) each recipient would take from a sender, and why", parents=[common]
    )
    test.add_argument("--sender", required=True, metavar="ADDR", help="envelope sender (\"\" for the null sender)")
    test.add_argument("--rcpt", required=True, metavar="ADDR", nargs="+", action="extend", help="recipients (--rcpt A B, or --rcpt A --rcpt B)")
    test.add_argument("--connector", metavar="NAME", help="the receive connector the message came in through (name or SERVER\\Name)")
    test.add_argument("--user", metavar="NAME", help="the login that authenticated the submission")
    test.set_defaults(run=with_config(_run))
