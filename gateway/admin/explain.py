"""
`exgateway receive-connector test`: which connector takes a connection, and why.

The question every comment under the seed article asks. Given a client
address, a port and optionally an envelope, this walks the same code the
server runs (most-specific selection, rights, the MAIL and RCPT checks, the
hub's routing) and reports each step: the connectors on that port with the
range that matched or why they lost, the rights the session would hold, and
the exact reply MAIL and each RCPT would get.
"""

from __future__ import annotations

from gateway.address import parse_path
from gateway.auth.users import UsersFile, UsersFileError
from gateway.config import Config, ReceiveConnector
from gateway.connectors import client_address, explain_selection
from gateway.domains import AcceptedDomains
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.policy.checks import SessionPolicy
from gateway.policy.rights import Principal, connector_rights
from gateway.route.router import Decision, Router
from gateway.route.source import RouteSource
from gateway.smtpd.protocol import principal_for


def _bindings_on_port(config: Config, port: int) -> dict[object, list[ReceiveConnector]]:
    by_binding: dict[object, list[ReceiveConnector]] = {}
    for c in config.receive_connectors:
        for b in c.bindings:
            if b.port == port:
                by_binding.setdefault(b, []).append(c)
    return by_binding


def _reply(fn) -> SMTPReply:
    try:
        return fn()
    except SMTPError as e:
        return e.reply


def _as_user(config: Config, chosen: ReceiveConnector, address, user: str, out: list[str]):
    """What AUTH as `user` (from the users file) would give on this connector: its Identity, or None."""
    if not chosen.basic_auth:
        mechanisms = ", ".join(sorted(chosen.auth_mechanisms)) or "None"
        out.append(f"  AUTH: not offered on {chosen.identity} (auth_mechanisms: {mechanisms}); {user} cannot log in here")
        return None
    try:
        record = UsersFile(config.auth.users_file).load_strict().get(user.lower())
    except (UsersFileError, OSError) as e:
        raise ValueError(str(e)) from None
    if record is None:
        where = " (LDAP users are not looked up by this command)" if "ldap" in config.auth.backends else ""
        out.append(f"  AUTH: no user {user!r} in {config.auth.users_file}{where}")
        return None
    if record.remote_ip_ranges and not any(r.contains(address) for r in record.remote_ip_ranges):
        ranges = ", ".join(map(str, record.remote_ip_ranges))
        out.append(f"  AUTH as {record.name}: fails from {address} even with the right password (it may log in only from {ranges})")
        return None
    when = "after STARTTLS" if "BasicAuthRequireTLS" in chosen.auth_mechanisms and not chosen.implicit_tls else "offered"
    out.append(f"  AUTH as {record.name} ({when}): accepted with the right password")
    identity = record.identity()
    out.append("  may send as: " + (", ".join(identity.send_as.patterns) or "(nothing: every MAIL FROM gets 550 5.7.60)"))
    return identity


def explain(
    config: Config, client_ip: str, port: int, mail_from: str | None = None, rcpts: tuple[str, ...] = (), user: str | None = None,
    recipient_exists=None,
) -> list[str]:
    """The report, as lines. `recipient_exists`: recipient validation, as the hub's Router gets it."""
    address = client_address(client_ip)
    out = [f"Connection from {address} to port {port}:"]
    by_binding = _bindings_on_port(config, port)
    if not by_binding:
        out.append(f"  no receive connector listens on port {port}")
        return out
    chosen: ReceiveConnector | None = None
    for binding, connectors in by_binding.items():
        winner, candidates = explain_selection(connectors, address)
        out.append(f"  binding {binding}:")
        width = max(len(c.identity) for c in connectors)
        for cand in candidates:
            c = cand.connector
            if not c.enabled:
                verdict = "disabled"
            elif cand.match is None:
                verdict = f"no range matches (ranges: {', '.join(str(r) for r in c.remote_ip_ranges)})"
            else:
                how = f"{cand.match} matches ({cand.match.size} address{'es' if cand.match.size != 1 else ''})"
                verdict = f"{how} <- chosen" if c is winner else f"{how}; lost: a more specific range won"
            out.append(f"    {c.identity:<{width}}  {verdict}")
        if winner is None:
            out.append(f"    no enabled connector serves {address}: it gets `{' '.join(Reply.NO_CONNECTOR.lines())}`")
        chosen = chosen or winner
    if chosen is None:
        return out
    principal = principal_for(chosen)
    identity = None
    if user is not None:
        identity = _as_user(config, chosen, address, user, out)
        if identity is not None:
            principal = Principal.AUTHENTICATED
    rights = connector_rights(chosen, principal)
    out.append(f"Session on {chosen.identity} ({chosen.role}) as {principal.value}:")
    out.append("  rights: " + (", ".join(sorted(r.value for r in rights)) or "(none)"))
    if chosen.require_tls:
        out.append("  (this connector requires STARTTLS before MAIL: 530 5.7.0 otherwise)")
    if mail_from is None and not rcpts:
        return out

    domains = AcceptedDomains(config.accepted_domains)
    policy = SessionPolicy(domains)
    router = Router(domains, config.send_connectors, recipient_exists)

    # A UTF-8 address is tried as a device would send it: in a SMTPUTF8 transaction (RFC 6531).
    utf8 = not all(a.isascii() for a in (mail_from or "", *rcpts))

    def mail() -> SMTPReply:
        sender, _ = parse_path(f"<{mail_from or ''}>", sender=True, utf8=utf8)
        policy.check_mail(rights, sender, None, chosen.max_message_size, identity)
        return Reply.SENDER_OK

    mail_reply = _reply(mail)
    out.append(f"  MAIL FROM:<{mail_from or ''}>  ->  {' '.join(mail_reply.lines())}")
    accepted = 0
    for rcpt in rcpts:
        decided: list[Decision] = []

        def check(rcpt=rcpt, accepted=accepted, decided=decided) -> SMTPReply:
            recipient, _ = parse_path(f"<{rcpt}>", sender=False, utf8=utf8)
            recipient = policy.resolve_postmaster(recipient)
            policy.check_rcpt(rights, recipient, accepted, chosen.max_recipients)
            # Recipient validation (policy/recipients.py), with the sources this process can ask at once.
            validate = getattr(recipient_exists, "check", None)
            if validate is not None:
                validate(recipient)
            # The hub routes what the frontend let through; a recipient with no route is refused there.
            decision = router.decide(recipient, RouteSource(mail_from or "", chosen.identity, identity.name if identity is not None else ""))
            decided.append(decision)
            if decision.hop is None:
                raise SMTPError(Reply.NO_ROUTE)
            return Reply.RECIPIENT_OK

        reply = _reply(check) if mail_reply.positive else Reply.NEED_MAIL
        accepted += reply.positive
        out.append(f"  RCPT TO:<{rcpt}>  ->  {' '.join(reply.lines())}")
        if decided:
            out.append(_route_line(decided[0]))
    return out


def _route_line(decision) -> str:
    """Where the hub sends the recipient: route, domain type, and why (route/router.py)."""
    kind = decision.domain_type or "not accepted"
    return f"      route: {decision.route_name}  domain type: {kind}  ({decision.why})"
