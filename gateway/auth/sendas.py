"""
Which sender addresses an authenticated user may use (send-as).

A user's patterns: exact addresses (`scanner01@corp.example`), every address
of a domain (`*@apps.corp.example`), of its subdomains (`*@*.corp.example`),
`<>` for the null sender, or `*` for any sender (an app trusted to send as
anyone; use sparingly). Addresses compare case-blind, as Exchange compares
proxy addresses. This is what lets an app account send as its own addresses
without a mailbox and without send-as rights on every mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.address import valid_domain


def parse_pattern(text: str) -> str:
    """Validate and normalise one pattern; ValueError names what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a string")
    pattern = text.strip().lower()
    # LDAP proxyAddresses carry the address type: "SMTP:primary", "smtp:alias".
    pattern = pattern.removeprefix("smtp:")
    if pattern in ("*", "<>"):
        return pattern
    local, at, domain = pattern.rpartition("@")
    if not at or not local:
        raise ValueError(f"{text!r} is not an address, *@domain, *@*.domain, <> or *")
    bare = domain.removeprefix("*.")
    if not valid_domain(bare):
        raise ValueError(f"{text!r}: {domain!r} is not a domain")
    if "*" in local and local != "*":
        raise ValueError(f"{text!r}: a wildcard stands for the whole local part (*@domain)")
    return pattern


@dataclass(frozen=True)
class SenderPatterns:
    patterns: tuple[str, ...]

    @classmethod
    def of(cls, texts) -> SenderPatterns:
        return cls(tuple(dict.fromkeys(parse_pattern(t) for t in texts)))

    def allows(self, sender: str) -> bool:
        """`sender` is the MAIL FROM address without brackets ("" for the null sender)."""
        sender = sender.lower()
        if not sender:
            return "<>" in self.patterns or "*" in self.patterns
        _, _, domain = sender.rpartition("@")
        for p in self.patterns:
            if p == "*" or p == sender:
                return True
            if p.startswith("*@"):
                want = p[2:]
                if want == domain or (want.startswith("*.") and domain.endswith(want[1:])):
                    return True
        return False

    def __bool__(self) -> bool:
        return bool(self.patterns)
