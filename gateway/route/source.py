"""
Sender-dependent routing: which send connectors a message's source may use.

A send connector may name, besides its address spaces, where the mail must
come from:

- `source_senders`: envelope senders (`scanner@corp.example`,
  `*@scan.corp.example`, `*@*.corp.example`);
- `source_receive_connectors`: the receive connector the message came in
  through (`Client Frontend` or `EXSERVER\\Client Frontend`);
- `source_users`: the authenticated login that submitted it.

Every kind a connector names must match (a sender in the list AND a
connector in the list ...); a connector that names none serves every
source. A connector whose conditions do not match is not a candidate.

Which connector wins (route/router.py), as a Postfix admin expects
(transport_maps by recipient override sender_dependent_relayhost_maps,
which override the default relayhost) and as an Exchange admin reads
address spaces: the recipient's address space first (an exact domain beats
the longest `*.suffix`, which beats `*`); among equally specific ones a
connector scoped to the source beats an unscoped one, a connector naming
more kinds beats one naming fewer, an exact sender beats `*@domain`, which
beats `*@*.domain`; then the lowest cost.

Everything matched is recorded in the queued envelope (sender, the receive
connector's identity, the AUTH login), so a message keeps its route across
restarts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouteSource:
    """What sender-dependent routing looks at: from the envelope, or from the session at RCPT."""

    sender: str = ""
    connector: str = ""
    user: str = ""

    @classmethod
    def of(cls, envelope) -> RouteSource:
        return cls(envelope.sender, envelope.connector, envelope.auth)


def sender_pattern(value: str) -> str:
    """A source_senders entry, checked at config load: `user@domain`, `*@domain`, `*@*.domain`."""
    value = value.strip().lower()
    local, at, domain = value.rpartition("@")
    bare = domain.removeprefix("*.")
    if not at or not local or not bare or "*" in bare or (("*" in local) and local != "*") or (domain.startswith("*.") and local != "*"):
        raise ValueError(f"{value!r} is not user@domain, *@domain or *@*.domain")
    return value


def _sender_score(pattern: str, sender: str) -> int | None:
    """How closely a source_senders pattern matches a sender (higher is closer), or None."""
    sender = sender.lower()
    local, _, domain = sender.rpartition("@")
    if not local:
        return None
    p_local, _, p_domain = pattern.rpartition("@")
    if p_local != "*":
        return 3 if pattern == sender else None
    if p_domain.startswith("*."):
        return 1 if domain.endswith(p_domain[1:]) else None
    return 2 if domain == p_domain else None


def _connector_matches(names: tuple[str, ...], identity: str) -> bool:
    identity = identity.lower()
    short = identity.rpartition("\\")[2]
    return any(n.lower() in (identity, short) for n in names)


def source_score(connector, source: RouteSource | None) -> tuple[int, int] | None:
    """
    (kinds matched, sender closeness) if the connector may carry mail from
    `source`, (0, 0) for a connector that names no source; None if it names
    a source this is not. A source of None (no message in view) matches
    only unscoped connectors.
    """
    senders, connectors, users = connector.source_senders, connector.source_receive_connectors, connector.source_users
    if not (senders or connectors or users):
        return (0, 0)
    if source is None:
        return None
    kinds, closeness = 0, 0
    if senders:
        scores = [s for s in (_sender_score(p, source.sender) for p in senders) if s is not None]
        if not scores:
            return None
        kinds, closeness = kinds + 1, max(scores)
    if connectors:
        if not _connector_matches(connectors, source.connector):
            return None
        kinds += 1
    if users:
        if not source.user or source.user.lower() not in {u.lower() for u in users}:
            return None
        kinds += 1
    return (kinds, closeness)


def describe_source(connector, source: RouteSource | None) -> str:
    """Why a scoped connector matches or not, in words for `route test`."""
    parts = []
    if connector.source_senders:
        parts.append(f"source_senders {', '.join(connector.source_senders)}")
    if connector.source_receive_connectors:
        parts.append(f"source_receive_connectors {', '.join(connector.source_receive_connectors)}")
    if connector.source_users:
        parts.append(f"source_users {', '.join(connector.source_users)}")
    return "; ".join(parts) or "any source"
