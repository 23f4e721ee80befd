"""
A tiny authoritative DNS server on loopback for the MX tests, run as a
subprocess: `python -m tests.integration.dnsserver PORT ZONE.json`.

ZONE.json maps names to record lists: {"outside.example": {"MX": [[10,
"mx1.outside.example"]]}, "mx1.outside.example": {"A": ["127.0.0.1"]}}.
Names it does not know get NXDOMAIN. UDP and TCP, 127.0.0.1 only.
"""

import json
import sys

from twisted.internet import defer, reactor
from twisted.names import common, dns, error, server

BUILD = {
    "MX": lambda v: (dns.MX, dns.Record_MX(v[0], v[1].encode())),
    "A": lambda v: (dns.A, dns.Record_A(v)),
    "AAAA": lambda v: (dns.AAAA, dns.Record_AAAA(v)),
    # A list of character-strings, as a zone file's ( "..." "..." ).
    "TXT": lambda v: (dns.TXT, dns.Record_TXT(*[s.encode() for s in v])),
}


class ZoneResolver(common.ResolverBase):
    def __init__(self, zone: dict) -> None:
        super().__init__()
        self.zone = {name.lower(): records for name, records in zone.items()}

    def _lookup(self, name, cls, type, timeout=None):
        key = name.decode().lower().rstrip(".")
        if key not in self.zone:
            return defer.fail(error.DomainError(name))
        answers = []
        for kind, values in self.zone[key].items():
            for value in values:
                rtype, payload = BUILD[kind](value)
                if rtype == type:
                    answers.append(dns.RRHeader(name, rtype, dns.IN, 60, payload, auth=True))
        return defer.succeed((answers, [], []))


def main() -> None:
    port, zone_file = int(sys.argv[1]), sys.argv[2]
    with open(zone_file) as f:
        zone = json.load(f)
    factory = server.DNSServerFactory(authorities=[ZoneResolver(zone)])
    reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
