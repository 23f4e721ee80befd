"""
Address rewriting at the hub (Exchange Edge's address rewriting, Postfix's
canonical maps): `root@printer01.local` becomes `printer01@corp.example`,
`*@*.corp.local` becomes `*@corp.example`.

Each `[[rewrite]]` rule maps a pattern to an address and says which side of
the message it applies to:

- "outbound" (the default): the sender side, what a device says it is:
  MAIL FROM and the From:, Sender: and Reply-To: fields;
- "inbound": the recipient side: RCPT TO (before routing) and the To: and
  Cc: fields;
- "both": all of these.

Rewriting happens once, in the hub's intake (gateway/intake.py), before the
message is queued and before it is signed: a DKIM signature covers the
rewritten From:. Only the address itself changes: display names, comments,
folding and every other byte of the message stay as they were. Addresses
inside quoted strings or comments are not touched (they are display text,
and rewriting them would change what the sender wrote); neither are quoted
local parts and address literals.

The most specific rule wins: an exact domain over the longest `*.suffix`
over `*`, then an exact local part over `*`. A target's `*` local part
keeps the original local part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.address import Address, valid_domain
from gateway.headerfields import field_name, split_fields

DIRECTIONS = ("outbound", "inbound", "both")
RULE_KEYS = {"match", "to", "direction"}
SENDER_FIELDS = (b"from", b"sender", b"reply-to")
RECIPIENT_FIELDS = (b"to", b"cc")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+$")
# An address in a header field, standing alone or in angle brackets; not inside a quoted string or comment.
_HEADER_ADDRESS = re.compile(
    rb"(?:(?<=[\s<,:])|^)(?P<local>[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+)@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)(?=[\s>,;]|$)"
)

# Quoted strings and comments (one level of nesting): display text, left alone.
_QUOTED = re.compile(rb'("(?:[^"\\]|\\.)*"|\((?:[^()\\]|\\.|\((?:[^()\\]|\\.)*\))*\))', re.DOTALL)


@dataclass(frozen=True)
class RewriteRule:
    local: str  # "*" or a local part (matched without regard to case)
    domain: str  # "*", "*.suffix" or a domain, lower case
    to_local: str  # "*": keep the original local part
    to_domain: str
    direction: str = "outbound"

    def specificity(self, domain: str) -> tuple[int, int] | None:
        """How closely the rule matches a domain (higher is closer), or None."""
        if self.domain == "*":
            score = 0
        elif self.domain.startswith("*."):
            if not domain.endswith(self.domain[1:]):
                return None
            score = len(self.domain)
        elif domain == self.domain:
            score = 10_000
        else:
            return None
        return score, self.local != "*"

    def matches(self, local: str, domain: str) -> tuple[int, int] | None:
        if self.local != "*" and self.local.lower() != local.lower():
            return None
        return self.specificity(domain)

    def apply(self, local: str) -> tuple[str, str]:
        return (local if self.to_local == "*" else self.to_local), self.to_domain

    def __str__(self) -> str:
        """The rule as the config wrote it, for `exgateway route test`."""
        return f"{self.local}@{self.domain} -> {self.to_local}@{self.to_domain}, {self.direction}"

    @property
    def outbound(self) -> bool:
        return self.direction in ("outbound", "both")

    @property
    def inbound(self) -> bool:
        return self.direction in ("inbound", "both")


def parse_rule(data: dict) -> RewriteRule:
    """One [[rewrite]] table; ValueError(reason) naming what is wrong."""
    if "match" not in data or "to" not in data:
        raise ValueError("needs match and to")
    match, to, direction = data["match"], data["to"], data.get("direction", "outbound")
    if not isinstance(match, str) or match.count("@") != 1:
        raise ValueError(f"match {match!r} is not local@domain (local may be *, domain *.suffix or *)")
    if not isinstance(to, str) or to.count("@") != 1:
        raise ValueError(f"to {to!r} is not local@domain (local may be * to keep it)")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    local, domain = match.split("@")
    to_local, to_domain = to.split("@")
    for part in (local, to_local):
        if part != "*" and not _LOCAL.match(part):
            raise ValueError(f"{part!r} is not a local part or *")
    bare = domain.removeprefix("*.")
    if domain != "*" and not valid_domain(bare):
        raise ValueError(f"{domain!r} is not a domain, *.domain or *")
    if not valid_domain(to_domain):
        raise ValueError(f"{to_domain!r} is not a domain (the target has no wildcard domain)")
    return RewriteRule(local, domain.lower(), to_local, to_domain.lower(), direction)


def read_rules(reader, raw: dict, accepted=None) -> tuple[RewriteRule, ...]:
    """
    The [[rewrite]] rules of a config file, problems reported through the config reader.

    An inbound (or both) rule must rewrite into an accepted domain (`accepted`,
    gateway/domains.AcceptedDomains): the frontend decides relaying on RCPT TO as
    the client gave it and the hub rewrites afterwards, so a rule from an accepted
    domain to an outside one would relay anyone's mail there (an open relay).
    Exchange's inbound rewriting likewise maps onto internal domains.
    """
    data = raw.get("rewrite", [])
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        reader.problem("rewrite", "must be an array of tables ([[rewrite]])")
        return ()
    rules = []
    for i, d in enumerate(data):
        reader.table(d, f"rewrite[{i}]", RULE_KEYS)
        try:
            rule = parse_rule(d)
        except ValueError as e:
            reader.problem(f"rewrite[{i}]", str(e))
            continue
        if rule.inbound and accepted is not None and rule.to_domain not in accepted:
            reader.problem(f"rewrite[{i}].to", f"{rule.to_domain!r} is not an accepted domain: a direction = \"{rule.direction}\" rule "
                           "rewrites recipients after the relay check, so its target must be an accepted domain (else it is an open relay)")
            continue
        rules.append(rule)
    return tuple(rules)


class Rewriter:
    """The rules of one configuration, applied to envelope addresses and header fields."""

    def __init__(self, rules: tuple[RewriteRule, ...] = ()) -> None:
        self.outbound = tuple(r for r in rules if r.outbound)
        self.inbound = tuple(r for r in rules if r.inbound)

    def __bool__(self) -> bool:
        return bool(self.outbound or self.inbound)

    @staticmethod
    def _find(rules, local: str, domain: str) -> RewriteRule | None:
        best, best_key = None, None
        for rule in rules:
            key = rule.matches(local, domain)
            if key is not None and (best_key is None or key > best_key):
                best, best_key = rule, key
        return best

    def _rule(self, rules, address: Address) -> RewriteRule | None:
        if address.null or address.quoted or address.literal:
            return None
        return self._find(rules, address.local, address.domain)

    def _address(self, rules, address: Address) -> Address:
        rule = self._rule(rules, address)
        if rule is None:
            return address
        local, domain = rule.apply(address.local)
        return Address(local, domain)

    def sender(self, address: Address) -> Address:
        """MAIL FROM, rewritten by the outbound rules."""
        return self._address(self.outbound, address)

    def recipient(self, address: Address) -> Address:
        """RCPT TO, rewritten by the inbound rules (before routing)."""
        return self._address(self.inbound, address)

    def sender_rule(self, address: Address) -> RewriteRule | None:
        """The outbound rule sender() applies to MAIL FROM, if any (`exgateway route test` names it)."""
        return self._rule(self.outbound, address)

    def recipient_rule(self, address: Address) -> RewriteRule | None:
        """The inbound rule recipient() applies to RCPT TO, if any."""
        return self._rule(self.inbound, address)

    def header(self, header: bytes) -> bytes:
        """A header section with the addresses of From/Sender/Reply-To (outbound) and To/Cc (inbound) rewritten."""
        if not self:
            return header
        out = []
        changed = False
        for field in split_fields(header):
            name = field_name(field)
            rules = self.outbound if name in SENDER_FIELDS else self.inbound if name in RECIPIENT_FIELDS else ()
            if rules:
                colon = field.index(b":") + 1
                parts = _QUOTED.split(field[colon:])
                for i in range(0, len(parts), 2):
                    parts[i] = _HEADER_ADDRESS.sub(lambda m, rules=rules: self._header_address(rules, m), parts[i])
                value = b"".join(parts)
                if value != field[colon:]:
                    field = field[:colon] + value
                    changed = True
            out.append(field)
        return b"".join(out) if changed else header

    def _header_address(self, rules, m: re.Match) -> bytes:
        local, domain = m.group("local").decode("ascii"), m.group("domain").decode("ascii").lower()
        rule = self._find(rules, local, domain)
        if rule is None:
            return m.group(0)
        new_local, new_domain = rule.apply(local)
        return f"{new_local}@{new_domain}".encode("ascii")
