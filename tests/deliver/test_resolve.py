"""MX resolution over a fake twisted.names resolver: order, expansion, implicit and null MX, failures."""

import random

from twisted.internet.defer import fail, succeed
from twisted.names import dns, error

from gateway.config import HostPort
from gateway.deliver.resolve import MXResolver, ResolveError


class FakeResolver:
    """Zone data as dicts; a name in `broken` fails like a SERVFAIL."""

    def __init__(self, mx=None, a=None, aaaa=None, nxdomain=(), broken=()):
        self.mx, self.a, self.aaaa = mx or {}, a or {}, aaaa or {}
        self.nxdomain, self.broken = set(nxdomain), set(broken)

    def _answer(self, name, records):
        if name in self.nxdomain:
            return fail(error.DNSNameError(name))
        if name in self.broken:
            return fail(error.DNSServerError(name))
        return succeed((records, [], []))

    def lookupMailExchange(self, name):
        return self._answer(name, [dns.RRHeader(name, dns.MX, payload=dns.Record_MX(p, n)) for p, n in self.mx.get(name, [])])

    def lookupAddress(self, name):
        return self._answer(name, [dns.RRHeader(name, dns.A, payload=dns.Record_A(ip)) for ip in self.a.get(name, [])])

    def lookupIPV6Address(self, name):
        return self._answer(name, [dns.RRHeader(name, dns.AAAA, payload=dns.Record_AAAA(ip)) for ip in self.aaaa.get(name, [])])


def result(d):
    out = []
    d.addBoth(out.append)
    return out[0]


ZONE = FakeResolver(
    mx={"outside.example": [(20, b"backup.outside.example"), (10, b"mx1.outside.example"), (10, b"mx2.outside.example")]},
    a={"mx1.outside.example": ["192.0.2.1", "192.0.2.2"], "mx2.outside.example": ["192.0.2.3"], "backup.outside.example": ["198.51.100.9"],
       "plain.example": ["203.0.113.5"]},
    aaaa={"mx1.outside.example": ["2001:db8::1"]},
)


def test_mx_by_preference_every_address_ipv6_first():
    groups = result(MXResolver(ZONE, random.Random(1)).targets("outside.example"))
    names = [name for name, _ in groups]
    assert set(names[:2]) == {"mx1.outside.example", "mx2.outside.example"} and names[2] == "backup.outside.example"
    assert dict(groups)["mx1.outside.example"] == [HostPort("2001:db8::1", 25), HostPort("192.0.2.1", 25), HostPort("192.0.2.2", 25)]


def test_equal_preferences_are_shuffled():
    orders = {tuple(x.name for x in result(MXResolver(ZONE, random.Random(seed)).exchangers("outside.example"))) for seed in range(20)}
    assert orders == {
        ("mx1.outside.example", "mx2.outside.example", "backup.outside.example"),
        ("mx2.outside.example", "mx1.outside.example", "backup.outside.example"),
    }


def test_no_mx_means_the_domain_itself():
    assert result(MXResolver(ZONE).targets("plain.example", 2525)) == [("plain.example", [HostPort("203.0.113.5", 2525)])]


def test_null_mx_fails_at_once():
    zone = FakeResolver(mx={"nomail.example": [(0, b"")]})
    failure = result(MXResolver(zone).targets("nomail.example"))
    assert failure.check(ResolveError) and failure.value.permanent
    assert failure.value.reply == "556 5.1.10 the domain nomail.example accepts no mail (null MX, RFC 7505)"


def test_nxdomain_is_permanent_and_servfail_temporary():
    zone = FakeResolver(nxdomain={"gone.example"}, broken={"flaky.example"})
    gone = result(MXResolver(zone).targets("gone.example")).value
    assert gone.permanent and gone.reply.startswith("550 5.1.2 ")
    flaky = result(MXResolver(zone).targets("flaky.example")).value
    assert not flaky.permanent and flaky.reply == "451 4.4.3 DNS lookup of MX for flaky.example failed: DNSServerError"


def test_exchangers_without_addresses_are_temporary():
    zone = FakeResolver(mx={"odd.example": [(10, b"ghost.odd.example")]})
    failure = result(MXResolver(zone).targets("odd.example")).value
    assert not failure.permanent and "no address (A/AAAA) for the exchangers of odd.example: ghost.odd.example" in failure.reply
