"""
Issue 16 item 13: with `[mailbox] delivery = "smtp"` every local part of an
accepted domain was accepted, so a forged sender got a non-delivery report
carrying the spam's headers: backscatter. Recipients of authoritative
domains are now validated at RCPT (Exchange's recipient filter) and the
hub's notices per sender domain are limited.
"""

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.intake import IntakeHandler, InternalIds
from gateway.policy.checks import SessionPolicy
from gateway.policy.recipients import build_recipient_validator
from gateway.queue.noticelimit import NoticeLimit
from gateway.queue.notify import Notifier
from gateway.queue.store import QueueStore
from gateway.route.router import Router
from gateway.smtpd.protocol import ESMTPServer
from tests.test_intake import Scheduler

NOT_FOUND = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"


def gateway_session(tmp_path, validation: dict):
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "recipients.txt").write_text("alice@corp.example\n")
    cfg = testing.config(
        server={"name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": str(tmp_path / "var")},
        mailbox={"delivery": "smtp", "next_hop": "mailstore.corp.example:25"},
        recipient_validation=validation,
    )
    clock = Clock()
    clock.advance(1_795_000_000)
    domains = AcceptedDomains(cfg.accepted_domains)
    router = Router(domains, cfg.send_connectors, build_recipient_validator(cfg, clock))
    store = QueueStore(tmp_path / "queue", lambda f, *a: succeed(f(*a)))
    store.prepare()
    connector = next(c for c in cfg.receive_connectors if c.name == "Default Frontend")
    proto = ESMTPServer(connector, IntakeHandler(store, router, Scheduler(), clock, "mail.corp.example"), SessionPolicy(domains), clock)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "192.0.2.25", 25), peerAddress=IPv4Address("TCP", "203.0.113.9", 4000))
    proto.makeConnection(transport)

    def send(line):
        transport.clear()
        proto.dataReceived(line.encode() + b"\r\n")
        clock.advance(connector.tarpit_interval)
        return transport.value().decode().split("\r\n")[:-1]

    send("EHLO spammer.example")
    send("MAIL FROM:<forged@victim.example>")
    return send


def test_an_unknown_recipient_is_refused_at_rcpt_not_bounced_later(tmp_path):
    send = gateway_session(tmp_path, {"sources": ["list"]})
    assert send("RCPT TO:<random.guess@corp.example>") == [NOT_FOUND]
    assert send("RCPT TO:<alice@corp.example>") == ["250 2.1.5 Recipient OK"]
    assert send("RCPT TO:<postmaster@corp.example>") == ["250 2.1.5 Recipient OK"]


def test_without_a_source_every_local_part_is_accepted_as_before(tmp_path):
    """The embedded default (no directory, no list): validation is off, as it says in the README."""
    send = gateway_session(tmp_path, {})
    assert send("RCPT TO:<random.guess@corp.example>") == ["250 2.1.5 Recipient OK"]


def test_notices_to_one_sender_domain_are_limited(tmp_path):
    store = QueueStore(tmp_path / "q", lambda f, *a: succeed(f(*a)))
    store.prepare()
    clock = Clock()
    enqueued = []
    notifier = Notifier(store, InternalIds(clock, lambda: 100), clock, "mail.corp.example", lambda f, *a: succeed(f(*a)),
                        lambda e, body: enqueued.append(e))
    notifier.limit = NoticeLimit(clock, 2)
    failed = Recipient("gone@partner.example", RecipientState.FAILED, 1, "550 5.1.1 unknown")
    for i in range(5):
        entry = store.create(str(i + 1))
        entry.write(b"Subject: spam\r\n\r\nx\r\n")
        env = Envelope(str(i + 1), i + 1, f"<{i}@x>", f"forged{i}@victim.example", (failed,), 0.0, 20)
        store.commit(entry, env)
        notifier.notify("failed", env, [failed])
    assert [e.recipients[0].address for e in enqueued] == ["forged0@victim.example", "forged1@victim.example"]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    from tests.integration.conftest import require_tool
    from tests.integration.slapd import Slapd

    server = Slapd(tmp_path_factory.mktemp("slapd"), require_tool("slapd"), require_tool("slapadd"), "Ld@p-Pa55").start()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_the_directory_knows_mail_and_smtp_proxy_addresses(slapd):
    """Against OpenLDAP with AD's attributes: mail and smtp: proxyAddresses are recipients, X500: and strangers are not."""
    from twisted.internet import reactor

    from gateway.auth.ldap import LDAPRecipients
    from gateway.config import LDAPConfig
    from tests.integration.slapd import ADMIN_DN, ADMIN_PASSWORD, BASE_DN

    directory = LDAPRecipients(
        LDAPConfig(url=f"ldap://127.0.0.1:{slapd.port}", base_dn=BASE_DN, bind_dn=ADMIN_DN, bind_password=ADMIN_PASSWORD), reactor
    )
    found = {a: await directory.knows(a) for a in (
        "scanner1@corp.example", "scans@apps.corp.example", "SCANS@apps.corp.example", "/o=corp/cn=scanner1", "nobody@corp.example"
    )}
    assert found == {
        "scanner1@corp.example": True, "scans@apps.corp.example": True, "SCANS@apps.corp.example": True,
        "/o=corp/cn=scanner1": False, "nobody@corp.example": False,
    }
