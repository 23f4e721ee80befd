"""
Where mail for a domain goes: MX records, then every A and AAAA record of
every exchanger, through twisted.names (the resolver is injected).

- MX records by preference, equal preferences in random order (RFC 5321
  5.1), the random source injected so tests can pin it.
- Every exchanger expands to **all** its addresses, IPv6 and IPv4, so a
  round-robin name is a list to walk, not one address to hope for.
- No MX record: the domain itself is the exchanger (implicit MX).
- Null MX (RFC 7505, one MX of preference 0 pointing at "."): the domain
  takes no mail; fail at once with 556 5.1.10.
- A domain that does not exist: fail at once (550 5.1.2). Any other DNS
  trouble (timeout, SERVFAIL) is temporary: retry later.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass

from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.names import dns, error

from gateway.config.values import HostPort


class ResolveError(Exception):
    """Resolution failed; `reply` is what the recipients' status says, `permanent` whether to bounce now."""

    def __init__(self, reply: str, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


@dataclass(frozen=True)
class Exchanger:
    name: str
    preference: int


def _name(payload_name) -> str:
    name = payload_name.name if hasattr(payload_name, "name") else payload_name
    return (name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)).rstrip(".").lower()


class MXResolver:
    def __init__(self, resolver, rng: random.Random | None = None) -> None:
        self.resolver = resolver
        self.rng = rng or random.Random()

    @inlineCallbacks
    def exchangers(self, domain: str):
        """The domain's exchangers in the order to try them."""
        try:
            answers, _, _ = yield self.resolver.lookupMailExchange(domain)
        except error.DNSNameError:
            raise ResolveError(f"550 5.1.2 the domain {domain} does not exist (DNS NXDOMAIN)", True) from None
        except Exception as e:
            raise ResolveError(f"451 4.4.3 DNS lookup of MX for {domain} failed: {type(e).__name__}", False) from None
        records = [a.payload for a in answers if a.type == dns.MX]
        if len(records) == 1 and _name(records[0].name) == "" and records[0].preference == 0:
            raise ResolveError(f"556 5.1.10 the domain {domain} accepts no mail (null MX, RFC 7505)", True)
        if not records:
            return [Exchanger(domain, 0)]
        by_preference: dict[int, list[str]] = {}
        for r in records:
            name = _name(r.name)
            if name:
                by_preference.setdefault(r.preference, []).append(name)
        out = []
        for preference in sorted(by_preference):
            names = list(dict.fromkeys(by_preference[preference]))
            self.rng.shuffle(names)
            out += [Exchanger(n, preference) for n in names]
        return out

    @inlineCallbacks
    def addresses(self, host: str):
        """Every AAAA and A address of a host name ([] if it has none)."""
        results = yield DeferredList(
            [self.resolver.lookupIPV6Address(host), self.resolver.lookupAddress(host)], consumeErrors=True
        )
        out = []
        for ok, value in results:
            if not ok:
                continue
            for rr in value[0]:
                if rr.type == dns.AAAA:
                    out.append(socket.inet_ntop(socket.AF_INET6, rr.payload.address))
                elif rr.type == dns.A:
                    out.append(rr.payload.dottedQuad())
        return list(dict.fromkeys(out))

    @inlineCallbacks
    def targets(self, domain: str, port: int = 25):
        """Addresses to try for a domain, grouped by exchanger in MX order; ResolveError if none."""
        exchangers = yield self.exchangers(domain)
        groups = []
        for x in exchangers:
            addresses = yield self.addresses(x.name)
            if addresses:
                groups.append((x.name, [HostPort(a, port, x.name) for a in addresses]))
        if not groups:
            names = ", ".join(x.name for x in exchangers)
            raise ResolveError(f"451 4.4.4 no address (A/AAAA) for the exchangers of {domain}: {names}", False)
        return groups


def make_resolver(dns_config, reactor):
    """
    twisted.names' resolver on our reactor: the configured servers, else
    /etc/resolv.conf with /etc/hosts in front (as the system resolver does).
    """
    from twisted.names import client, hosts, resolve

    timeouts = (*(t for t in (1.0, 3.0) if t < dns_config.timeout), dns_config.timeout)
    if dns_config.servers:
        servers = [(s.host, s.port) for s in dns_config.servers]
        return client.Resolver(servers=servers, reactor=reactor, timeout=timeouts)
    system = client.Resolver(resolv="/etc/resolv.conf", reactor=reactor, timeout=timeouts)
    return resolve.ResolverChain([hosts.Resolver(b"/etc/hosts"), system])
