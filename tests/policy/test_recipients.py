"""Recipient validation: sources, verdicts by domain type, the cache and its bound, and the router's view."""

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from gateway.address import Address
from gateway.auth.identity import DirectoryUnavailable
from gateway.auth.users import UserRecord, UsersFile
from gateway.domains import AcceptedDomain, AcceptedDomains, DomainType
from gateway.errors import SMTPError
from gateway.policy.recipients import ListFileSource, RecipientValidator, UsersFileSource

NOT_FOUND = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
LOOKUP_FAILED = "451 4.4.3 Directory lookup failed. Please try again later"
DOMAINS = AcceptedDomains([
    AcceptedDomain("corp", "corp.example"),
    AcceptedDomain("shared", "shared.example", DomainType.INTERNAL_RELAY),
    AcceptedDomain("partner", "partner.example", DomainType.EXTERNAL_RELAY),
    AcceptedDomain("catchall", "catchall.corp.example"),
])


class Directory:
    """An LDAP-like source: answers later (Deferreds the test fires) or at once, and counts its searches."""

    name = "ldap"
    asynchronous = True

    def __init__(self, known=(), down=False):
        self.known = set(known)
        self.down = down
        self.searches = []

    def knows(self, address):
        self.searches.append(address)
        if self.down:
            return fail(DirectoryUnavailable("the directory did not answer in time"))
        return succeed(address in self.known)


def verdict(result):
    """The reply a check ends in: 'ok', or the SMTP reply line."""
    if isinstance(result, Deferred):
        out = []
        result.addBoth(out.append)
        result = out[0]
        if hasattr(result, "value"):
            return str(result.value.reply)
    return "ok" if result is None else result


def check(validator, address):
    local, domain = address.split("@")
    try:
        return verdict(validator.check(Address(local, domain)))
    except SMTPError as e:
        return str(e.reply)


@pytest.fixture
def listed(tmp_path):
    path = tmp_path / "recipients.txt"
    path.write_text("# mailboxes\nalice@corp.example\nBob@Corp.Example  # the boss\n*@catchall.corp.example\n")
    return ListFileSource(path)


def test_unknown_recipients_of_an_authoritative_domain_are_refused(listed):
    v = RecipientValidator([listed], DOMAINS, Clock())
    assert check(v, "alice@corp.example") == "ok"
    assert check(v, "bob@corp.example") == "ok"
    assert check(v, "mallory@corp.example") == NOT_FOUND
    assert check(v, "Postmaster@corp.example") == "ok"
    assert check(v, "anything@catchall.corp.example") == "ok"  # a *@domain line
    assert check(v, "anyone@outside.example") == "ok"      # not ours to judge: the relay rule is
    assert check(v, "anyone@partner.example") == "ok"      # ExternalRelay: lives elsewhere
    assert check(v, "unknown@shared.example") == "ok"      # InternalRelay: goes out instead
    assert (v("alice@corp.example"), v("unknown@shared.example")) == (True, False)


def test_users_file_names_and_exact_send_as_addresses_are_recipients(tmp_path):
    users = UsersFile(tmp_path / "users.toml")
    users.save([UserRecord("scanner@corp.example", "$argon2id$x", ("scans@corp.example", "*@corp.example")),
                UserRecord("printer", "$argon2id$x")])
    v = RecipientValidator([UsersFileSource(users)], DOMAINS, Clock())
    assert [check(v, a) for a in ("scanner@corp.example", "scans@corp.example", "x@corp.example", "printer@corp.example")] == [
        "ok", "ok", NOT_FOUND, NOT_FOUND
    ]


def test_a_directory_answers_and_is_asked_once_per_address_within_the_ttl(listed):
    directory = Directory(known={"carol@corp.example"})
    clock = Clock()
    v = RecipientValidator([listed, directory], DOMAINS, clock, cache_ttl=300)
    assert check(v, "alice@corp.example") == "ok" and directory.searches == []
    assert check(v, "carol@corp.example") == "ok"
    assert check(v, "nobody@corp.example") == NOT_FOUND
    assert check(v, "nobody@corp.example") == NOT_FOUND
    assert check(v, "carol@corp.example") == "ok"
    assert directory.searches == ["carol@corp.example", "nobody@corp.example"]
    clock.advance(300)
    assert check(v, "nobody@corp.example") == NOT_FOUND
    assert directory.searches[-1] == "nobody@corp.example" and len(directory.searches) == 3
    # The router's synchronous view: what RCPT found; None where only the directory could tell.
    assert (v("carol@corp.example"), v("nobody@corp.example"), v("dave@corp.example")) == (True, False, None)


def test_a_directory_outage_is_temporary_and_not_remembered(listed):
    directory = Directory(down=True)
    v = RecipientValidator([listed, directory], DOMAINS, Clock())
    assert check(v, "alice@corp.example") == "ok"        # the list knows her: no need to ask
    assert check(v, "carol@corp.example") == LOOKUP_FAILED
    assert check(v, "carol@shared.example") == LOOKUP_FAILED
    directory.down, directory.known = False, {"carol@corp.example"}
    assert check(v, "carol@corp.example") == "ok"


def test_an_unreadable_list_is_temporary_not_unknown(tmp_path):
    v = RecipientValidator([ListFileSource(tmp_path / "missing.txt")], DOMAINS, Clock())
    assert check(v, "alice@corp.example") == LOOKUP_FAILED
    (tmp_path / "missing.txt").write_text("alice@corp.example\n")
    assert check(v, "alice@corp.example") == "ok"
    assert check(v, "eve@corp.example") == NOT_FOUND


def test_the_cache_is_bounded():
    directory = Directory()
    v = RecipientValidator([directory], DOMAINS, Clock(), max_entries=100)
    for i in range(1000):
        assert check(v, f"guess{i}@corp.example") == NOT_FOUND
    assert len(v._cache) == 100


def test_receive_connector_test_shows_the_refusal(tmp_path, capsys):
    """`exgateway receive-connector test --rcpt` answers as RCPT would: a listed mailbox 250, a guess 550 5.1.10."""
    from gateway.admin.cli import main
    from gateway.config import default_config_path

    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "recipients.txt").write_text("alice@corp.example\n")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(default_config_path().read_text().replace('var_dir = "var"', f'var_dir = "{tmp_path}/var"')
                   + '\n[recipient_validation]\nsources = ["list"]\n')
    assert main(["--config", str(cfg), "receive-connector", "test", "--client-ip", "203.0.113.5", "--port", "25",
                 "--mail-from", "partner@outside.example", "--rcpt", "alice@corp.example", "--rcpt", "guess@corp.example"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  RCPT TO:<alice@corp.example>  ->  250 2.1.5 Recipient OK" in out
    assert f"  RCPT TO:<guess@corp.example>  ->  {NOT_FOUND}" in out


class MailStore:
    """A next hop on loopback that knows one mailbox: the exact replies a mail store gives a callout."""

    def __init__(self, known, rcpt_unknown=b"550 5.1.1 User unknown"):
        from twisted.internet.protocol import Factory
        from twisted.protocols.basic import LineReceiver

        store = self
        self.known, self.rcpt_unknown, self.seen = known, rcpt_unknown, []

        class Session(LineReceiver):
            def connectionMade(self):
                self.sendLine(b"220 store.corp.example ESMTP")

            def lineReceived(self, line):
                store.seen.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    self.sendLine(b"250 store.corp.example")
                elif verb == b"MAIL":
                    self.sendLine(b"250 2.1.0 Ok")
                elif verb == b"RCPT":
                    known = line[9:-1].decode().lower() in store.known
                    self.sendLine(b"250 2.1.5 Ok" if known else store.rcpt_unknown)
                elif verb == b"QUIT":
                    self.sendLine(b"221 2.0.0 Bye")
                    self.transport.loseConnection()
                else:
                    self.sendLine(b"502 5.5.2 Error")

        self.factory = Factory.forProtocol(Session)


@pytest_twisted.ensureDeferred
async def test_a_callout_asks_the_mail_store_and_sends_no_message():
    from twisted.internet import reactor

    from gateway.config import HostPort
    from gateway.policy.recipients import CalloutSource

    store = MailStore({"alice@corp.example"})
    port = reactor.listenTCP(0, store.factory, interface="127.0.0.1")
    try:
        source = CalloutSource(reactor, HostPort("127.0.0.1", port.getHost().port), "hub.corp.example", timeout=5)
        v = RecipientValidator([source], DOMAINS, reactor)
        assert await v.check(Address("alice", "corp.example")) is None
        with pytest.raises(SMTPError) as refused:
            await v.check(Address("guess", "corp.example"))
        assert str(refused.value.reply) == NOT_FOUND
        # QUIT is sent without waiting for it: give it a moment to arrive.
        from twisted.internet.task import deferLater

        for _ in range(200):
            if store.seen.count(b"QUIT") == 2:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert [line for line in store.seen if not line.startswith(b"EHLO")] == [
            b"MAIL FROM:<>", b"RCPT TO:<alice@corp.example>", b"QUIT", b"MAIL FROM:<>", b"RCPT TO:<guess@corp.example>", b"QUIT",
        ]
        store.rcpt_unknown = b"450 4.2.0 Try later"
        with pytest.raises(SMTPError) as later:
            await v.check(Address("other", "corp.example"))
        assert str(later.value.reply) == LOOKUP_FAILED
    finally:
        await port.stopListening()
    with pytest.raises(SMTPError) as down:
        await RecipientValidator([source], DOMAINS, reactor).check(Address("x", "corp.example"))
    assert str(down.value.reply) == LOOKUP_FAILED
