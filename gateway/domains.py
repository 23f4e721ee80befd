"""
Accepted domains: the domains the organisation receives mail for.

Types are Exchange's: Authoritative (every recipient is ours), InternalRelay
and ExternalRelay (recipients may live elsewhere); how each is routed is
in gateway/route/router.py. A wildcard `*.corp.example`
matches the subdomains of corp.example, not corp.example itself: list the
parent separately. The most specific entry wins, as in Exchange.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class DomainType(str, Enum):
    AUTHORITATIVE = "Authoritative"
    INTERNAL_RELAY = "InternalRelay"
    EXTERNAL_RELAY = "ExternalRelay"


@dataclass(frozen=True)
class AcceptedDomain:
    name: str
    domain: str
    type: DomainType = DomainType.AUTHORITATIVE

    @property
    def wildcard(self) -> bool:
        return self.domain.startswith("*.")

    def matches(self, domain: str) -> bool:
        if self.wildcard:
            return domain.endswith(self.domain[1:])
        return domain == self.domain


class AcceptedDomains:
    """Lookup of a recipient domain (already lower-cased) in the accepted domains."""

    def __init__(self, domains: Iterable[AcceptedDomain]) -> None:
        domains = list(domains)
        self._exact = {d.domain: d for d in domains if not d.wildcard}
        self._wild = sorted((d for d in domains if d.wildcard), key=lambda d: -len(d.domain))
        self._primary = next((d.domain for d in domains if not d.wildcard and d.type is DomainType.AUTHORITATIVE), None)

    def lookup(self, domain: str) -> AcceptedDomain | None:
        found = self._exact.get(domain)
        if found is not None:
            return found
        for d in self._wild:
            if d.matches(domain):
                return d
        return None

    def primary(self) -> str | None:
        """The first authoritative, non-wildcard domain: where bare <Postmaster> goes."""
        return self._primary

    def __contains__(self, domain: str) -> bool:
        return self.lookup(domain) is not None

    def authoritative(self, domain: str) -> bool:
        found = self.lookup(domain)
        return found is not None and found.type is DomainType.AUTHORITATIVE
