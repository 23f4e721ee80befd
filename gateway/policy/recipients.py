"""
Recipient validation at RCPT for the authoritative domains (Exchange's
recipient filter with RecipientValidationEnabled).

An Authoritative accepted domain means every recipient in it is the
organisation's; a recipient nobody knows is refused at RCPT with Exchange's
`550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP
address lookup` instead of being accepted and bounced later. Accepting and
bouncing is backscatter: the non-delivery report goes to a sender that is
usually forged, carrying the spam's headers with it.

Sources, asked in order until one knows the address:
  users_file  the users file's account names that are addresses, and their
              exact send-as addresses (not `*@` patterns)
  ldap        the directory of [authentication.ldap]: an entry whose `mail`
              or `proxyAddresses` (smtp:) is the address
  list        a text file, one address per line (`#` comments); a line
              `*@domain` accepts every local part of that domain
  callout     the mailbox next hop itself ([mailbox] delivery = "smtp"):
              `MAIL FROM:<>` and `RCPT TO:<address>` there, then QUIT; its
              2xx is a recipient, its 5xx is not, anything else unavailable

`postmaster@` an authoritative domain is always accepted (RFC 5321 4.5.1).
If no source knows the address and one could not answer (the directory is
down, the list file unreadable), the answer is temporary: `451 4.4.3`, so a
directory outage never refuses real mail for good. Directory answers are
cached for `cache_ttl` in a bounded table, so a dictionary attack costs the
directory at most one search per address and the table cannot grow without
end.

InternalRelay domains are looked up too but never refused: a recipient the
organisation does not know goes out through the domain's send connector
(gateway/route/router.py asks the validator, called as
`recipient_exists(address)`, which answers from what RCPT found). ExternalRelay
domains are not checked: their recipients live elsewhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.address import Address
from gateway.auth.identity import DirectoryUnavailable
from gateway.domains import DomainType
from gateway.errors import Reply, SMTPError

log = Logger(namespace="exgateway.recipients")

MAX_CACHE_ENTRIES = 10_000


class RecipientSource(Protocol):
    """What the validator asks of a source: whether an address exists, at once or in a Deferred; `name` for the log."""

    name: str

    def knows(self, address: str) -> bool | Deferred: ...


class UsersFileSource:
    """The users file's accounts as recipients: names that are addresses and exact send-as addresses."""

    name = "users_file"

    def __init__(self, users_file) -> None:
        self.users_file = users_file

    def knows(self, address: str) -> bool:
        for record in self.users_file.users().values():
            if record.name.lower() == address:
                return True
            if any(p.lower() == address for p in record.send_as if "*" not in p):
                return True
        return False


class ListFileSource:
    """A text file of addresses (and `*@domain` lines), re-read when it changes; unreadable means unavailable."""

    name = "list"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._addresses: frozenset[str] = frozenset()
        self._domains: frozenset[str] = frozenset()

    def _load(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return
            lines = self.path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            self._stamp = None
            raise DirectoryUnavailable(f"recipient list {self.path} cannot be read: {getattr(e, 'strerror', None) or e}") from None
        addresses, domains = set(), set()
        for line in lines:
            entry = line.split("#", 1)[0].strip().lower()
            if entry.startswith("*@"):
                domains.add(entry[2:])
            elif "@" in entry:
                addresses.add(entry)
        self._addresses, self._domains, self._stamp = frozenset(addresses), frozenset(domains), stamp

    def knows(self, address: str) -> bool:
        self._load()
        return address in self._addresses or address.rpartition("@")[2] in self._domains


class CalloutSource:
    """
    Ask the mailbox next hop (the organisation's mail store) whether it takes
    the address, the way Postfix's reject_unverified_recipient does; the
    validator caches the answer. No message is sent: QUIT follows the RCPT.
    """

    name = "callout"
    asynchronous = True

    def __init__(self, reactor, next_hop, helo_name: str, timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.next_hop = next_hop
        self.helo_name = helo_name
        self.timeout = timeout

    def knows(self, address: str) -> Deferred:
        from gateway.deliver.client import connect

        d = connect(self.reactor, self.next_hop.host, self.next_hop.port, self.helo_name, self.timeout, self.timeout)
        d.addCallback(self._probe, address)
        d.addErrback(self._unavailable)
        return d

    def _probe(self, client, address: str) -> Deferred:
        def rcpt(reply):
            if reply.code != 250:
                raise DirectoryUnavailable(f"the mailbox next hop refused MAIL FROM:<>: {reply}")
            return client.command(f"RCPT TO:<{address}>")

        def verdict(reply):
            if reply.code // 100 == 2:
                return True
            if reply.code // 100 == 5:
                return False
            raise DirectoryUnavailable(f"the mailbox next hop answered RCPT with {reply}")

        def close(result):
            if client.connected:
                client.command("QUIT").addErrback(lambda _: None)
                client.transport.loseConnection()
            return result

        return client.command("MAIL FROM:<>").addCallback(rcpt).addCallback(verdict).addBoth(close)

    def _unavailable(self, failure):
        if failure.check(DirectoryUnavailable):
            return failure
        raise DirectoryUnavailable(f"callout to {self.next_hop} failed: {failure.getErrorMessage() or failure.type.__name__}")


class RecipientValidator:
    """Checks RCPT recipients of authoritative domains against the sources; see the module docstring."""

    def __init__(self, sources: Iterable[RecipientSource], accepted_domains, clock, cache_ttl: float = 300.0, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self.sources = list(sources)
        # Replaced on reload (gateway/reload.py), like the router's.
        self.accepted_domains = accepted_domains
        self.clock = clock
        self.cache_ttl = cache_ttl
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def check(self, recipient: Address) -> Deferred | None:
        """
        None if the recipient may be accepted now; a Deferred (firing None)
        if a directory is asked; SMTPError if refused (an unknown recipient
        of an authoritative domain, or any lookup that could not be answered).
        """
        if recipient.literal:
            return None
        accepted = self.accepted_domains.lookup(recipient.domain)
        if accepted is None or accepted.type is DomainType.EXTERNAL_RELAY:
            return None
        # The local part unquoted: "bob"@corp.example is bob@corp.example.
        address = f"{recipient.local}@{recipient.domain}".lower()
        if recipient.local.lower() == "postmaster":
            return None
        refuse = accepted.type is DomainType.AUTHORITATIVE
        cached = self._cached(address)
        if cached is not None:
            return self._verdict(address, cached, None, refuse)
        result = self._ask(address, 0, None)
        if isinstance(result, Deferred):
            return result.addCallback(lambda verdict: self._verdict(address, verdict[0], verdict[1], refuse))
        return self._verdict(address, result[0], result[1], refuse)

    def __call__(self, address: str) -> bool | None:
        """
        The router's recipient_exists: what the sources say now without
        waiting for a directory (its last answer, even if past cache_ttl;
        RCPT asked it moments ago), or None if only a directory could tell.
        """
        address = address.lower()
        hit = self._cache.get(address)
        if hit is not None:
            return hit[1]
        unknown = False
        for source in self.sources:
            if getattr(source, "asynchronous", False):
                unknown = True
                continue
            try:
                if source.knows(address):
                    return True
            except DirectoryUnavailable:
                unknown = True
        return None if unknown else False

    def _cached(self, address: str) -> bool | None:
        hit = self._cache.get(address)
        if hit is None:
            return None
        until, known = hit
        if until <= self.clock.seconds():
            del self._cache[address]
            return None
        return known

    def _remember(self, address: str, known: bool) -> None:
        self._cache[address] = (self.clock.seconds() + self.cache_ttl, known)
        self._cache.move_to_end(address)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def _ask(self, address: str, start: int, unavailable: str | None) -> tuple[bool, str | None] | Deferred:
        """
        (known, why-unavailable) from the sources from `start` on: at once
        from the in-memory ones, in a Deferred once a directory is asked.
        """
        for i in range(start, len(self.sources)):
            source = self.sources[i]
            try:
                answer = source.knows(address)
            except DirectoryUnavailable as e:
                unavailable = str(e)
                continue
            if isinstance(answer, Deferred):
                answer.addCallbacks(self._answered, self._failed, callbackArgs=(address, i, unavailable),
                                    errbackArgs=(address, i, unavailable))
                return answer
            if answer:
                self._remember(address, True)
                return True, None
        if unavailable is None:
            self._remember(address, False)
        return False, unavailable

    def _answered(self, known: bool, address: str, i: int, unavailable: str | None):
        if known:
            self._remember(address, True)
            return True, None
        return self._continue(address, i, unavailable)

    def _failed(self, failure, address: str, i: int, unavailable: str | None):
        failure.trap(DirectoryUnavailable)
        log.warn("recipient source {source} unavailable: {error}", source=self.sources[i].name, error=failure.getErrorMessage())
        return self._continue(address, i, failure.getErrorMessage())

    def _continue(self, address: str, i: int, unavailable: str | None):
        return self._ask(address, i + 1, unavailable)

    @staticmethod
    def _verdict(address: str, known: bool, unavailable: str | None, refuse: bool) -> None:
        if known:
            return
        if unavailable is not None:
            raise SMTPError(Reply.RECIPIENT_LOOKUP_FAILED, recipient=address, reason=unavailable)
        if refuse:
            raise SMTPError(Reply.RECIPIENT_NOT_FOUND, recipient=address)
        return


def build_recipient_validator(config, reactor, directory: bool = True) -> RecipientValidator | None:
    """
    The validator [recipient_validation] asks for, or None when it names no
    source (LiveConfig's make_recipient_exists). Without `directory` (the
    CLI's `receive-connector test`, which runs no reactor) the LDAP source is
    left out and None is returned if nothing else is configured.
    """
    from gateway.domains import AcceptedDomains

    accepted_domains = AcceptedDomains(config.accepted_domains)
    settings = config.recipient_validation
    names = [n for n in settings.sources if directory or n not in ("ldap", "callout")]
    if not names:
        return None
    sources: list[RecipientSource] = []
    for name in names:
        if name == "users_file":
            from gateway.auth.users import UsersFile

            sources.append(UsersFileSource(UsersFile(config.auth.users_file)))
        elif name == "list":
            sources.append(ListFileSource(settings.list_file))
        elif name == "ldap":
            from gateway.auth.ldap import LDAPRecipients

            sources.append(LDAPRecipients(config.auth.ldap, reactor))
        elif name == "callout":
            sources.append(CalloutSource(reactor, config.mailbox.next_hop, config.fqdn))
    return RecipientValidator(sources, accepted_domains, reactor, settings.cache_ttl)
