"""Journaling ([[journal_rules]]): envelope reports and Bcc copies at the hub's intake; originals unchanged."""

import email
import email.policy

import pytest

from gateway import testing
from gateway.config import ConfigError
from gateway.domains import AcceptedDomains
from gateway.journal import Journal, JournalRule
from gateway.queue.store import body_bytes
from gateway.route.router import Router
from tests.test_intake import Hub

JOURNAL_DOMAINS = [{"domain": "corp.example"}, {"domain": "archive.corp.example"}]


def test_scope_all_senders_or_recipients():
    """No scope: everything; senders or recipients: a message that matches either."""
    everything = JournalRule("all", "j@archive.corp.example")
    by_sender = JournalRule("scan", "j@archive.corp.example", "bcc", senders=("*@*.scan.corp.example",))
    by_recipient = JournalRule("ceo", "k@archive.corp.example", recipients=("ceo@corp.example",))
    journal = Journal((everything, by_sender, by_recipient))
    assert journal.targets("a@x.example", ["b@corp.example"]) == ([], ["j@archive.corp.example"])
    assert journal.targets("dev@f2.scan.corp.example", ["b@corp.example"]) == (["j@archive.corp.example"], ["j@archive.corp.example"])
    assert journal.targets("a@x.example", ["b@corp.example", "CEO@corp.example"]) == ([], ["j@archive.corp.example", "k@archive.corp.example"])
    assert Journal((by_sender,)).targets("", ["b@corp.example"]) == ([], [])


def journal_hub(tmp_path, **rule):
    hub = Hub(tmp_path)
    cfg = testing.config(accepted_domains=JOURNAL_DOMAINS, journal_rules=[{"journal_recipient": "journal@archive.corp.example", **rule}])
    hub.handler.configure(cfg)
    hub.handler.router = Router(AcceptedDomains(cfg.accepted_domains))
    hub.handler.journal.random = lambda n: b"\x01" * n
    return hub


MESSAGE = b"From: scan@corp.example\r\nTo: alice@corp.example\r\nSubject: invoice 7\r\nMessage-ID: <m7@corp.example>\r\n\r\nbody\r\n"


def queued(hub):
    """(original, report, the report's body handed to the scheduler)."""
    (original,) = [e for e in hub.scheduler.queued if e.connector != "Journal"]
    ((report, body),) = [(e, b) for e, b in zip(hub.scheduler.queued, hub.scheduler.bodies, strict=True) if e.connector == "Journal"]
    return original, report, body


def submit(hub, rcpts=(b"alice@corp.example", b"bob@corp.example")):
    lines = hub.send(
        b"EHLO fe\r\nMAIL FROM:<scan@corp.example>\r\n" + b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts) + b"DATA\r\n" + MESSAGE + b".\r\n"
    )
    assert lines[-1].startswith("250 2.6.0 <m7@corp.example>"), lines


def test_bcc_adds_an_envelope_recipient_that_never_notifies(tmp_path):
    """The journal is one more recipient (NOTIFY=NEVER); the queued bytes are what they would be without it."""
    hub = journal_hub(tmp_path, report="bcc")
    submit(hub)
    (env,) = hub.scheduler.queued
    assert [(r.address, r.notify) for r in env.recipients] == [
        ("alice@corp.example", ""), ("bob@corp.example", ""), ("journal@archive.corp.example", "NEVER")
    ]
    plain = Hub(tmp_path / "plain")
    submit(plain)
    assert hub.stored().split(b"\r\n", 5)[-1] == plain.stored().split(b"\r\n", 5)[-1]
    assert b"journal@" not in hub.stored()


def test_envelope_report_attaches_the_original_as_queued(tmp_path):
    """A second queued message: null sender, to the journal, text part naming sender, recipients and Message-ID, then the original."""
    hub = journal_hub(tmp_path)
    submit(hub)
    original, report, kept = queued(hub)
    assert [r.address for r in original.recipients] == ["alice@corp.example", "bob@corp.example"]
    assert (report.sender, [r.address for r in report.recipients], report.connector) == ("", ["journal@archive.corp.example"], "Journal")
    stored = hub.stored_of(original)
    data = body_bytes(hub.store.body_path(report.queue_id), report.size)
    assert report.size == len(data) and data == kept
    boundary = "=_exgw-journal-" + "01" * 16
    head, text, attached, end = data.split(f"--{boundary}".encode())
    assert f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'.encode() in head
    assert b"To: <journal@archive.corp.example>\r\nSubject: Journal report: invoice 7\r\n" in head
    assert text.endswith(b"\r\n\r\nSender: scan@corp.example\r\nSubject: invoice 7\r\nMessage-Id: <m7@corp.example>\r\n"
                         b"To: alice@corp.example\r\nTo: bob@corp.example\r\n\r\n")
    assert attached == b"\r\nContent-Type: message/rfc822\r\n\r\n" + stored + b"\r\n"
    assert end == b"--\r\n"
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    inner = parsed.get_payload()[1].get_payload()[0]
    assert inner["Message-ID"] == "<m7@corp.example>" and inner.get_content().strip() == "body"


def test_a_large_original_streams_into_both_files(tmp_path):
    """Past the in-memory limit both queue files are written as the body arrives; the attachment is the original byte for byte."""
    hub = journal_hub(tmp_path)
    big = b"".join(b"row %07d\r\n" % i for i in range(60000))
    hub.send(b"EHLO fe\r\nMAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n" + MESSAGE + big + b".\r\n")
    original, report, _ = queued(hub)
    assert original.size > 600_000
    data = body_bytes(hub.store.body_path(report.queue_id), report.size)
    assert hub.stored_of(original) + b"\r\n--=_exgw-journal-" in data


def test_an_aborted_message_leaves_no_report(tmp_path):
    hub = journal_hub(tmp_path)
    hub.send(b"EHLO fe\r\nMAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\nSubject: x\r\n\r\npartial")
    hub.proto.connectionLost(None)
    assert hub.scheduler.queued == []
    assert [p for p in (tmp_path / "queue").iterdir() if p.is_file() and p.stat().st_size] == []


def test_unscoped_messages_are_not_journaled(tmp_path):
    hub = journal_hub(tmp_path, senders=["*@elsewhere.example"])
    submit(hub)
    (env,) = hub.scheduler.queued
    assert [r.address for r in env.recipients] == ["alice@corp.example", "bob@corp.example"]


@pytest.mark.parametrize("rule, key, reason", [
    ({"journal_recipient": "j@nowhere.example"}, "journal_rules[0].journal_recipient", "no route to j@nowhere.example"),
    ({"journal_recipient": "j@archive.corp.example", "report": "copy"}, "journal_rules[0].report", "is not one of envelope, bcc"),
    ({"journal_recipient": "j@archive.corp.example", "senders": ["bad pattern"]}, "journal_rules[0].senders[0]", "is not *, user@domain"),
    ({}, "journal_rules[0].journal_recipient", "required"),
])
def test_bad_rules_are_named(rule, key, reason):
    with pytest.raises(ConfigError) as e:
        testing.config(accepted_domains=JOURNAL_DOMAINS, journal_rules=[rule])
    (problem,) = e.value.problems
    assert problem.key == key and reason in problem.reason


def test_a_non_ascii_subject_is_encoded_in_the_reports_header(tmp_path):
    """The report's own Subject: is RFC 2047 (it may go to a next hop without SMTPUTF8); its text part says it in UTF-8."""
    hub = journal_hub(tmp_path)
    hub.send(b"EHLO fe\r\nMAIL FROM:<scan@corp.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n"
             b"Subject: Rechnung f\xc3\xbcr M\xc3\xa4rz\r\n\r\nx\r\n.\r\n")
    _, report, _ = queued(hub)
    data = body_bytes(hub.store.body_path(report.queue_id), report.size)
    head = data.split(b"\r\n\r\n")[0]
    assert head.isascii() and b"Subject: =?utf-8?" in head
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == "Journal report: Rechnung f\xfcr M\xe4rz"
    assert "Subject: Rechnung f\xfcr M\xe4rz\r\n".encode() in data.split(b"Content-Type: message/rfc822")[0]
