"""DKIM signing at the hub's intake: streamed body hash, dkimpy verifies, the message's bytes unchanged."""

import hashlib
import random

import dkim
import pytest

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.queue.entry import StoredBody
from gateway.route.router import Router
from gateway.sign.dkim import RelaxedBodyHash, SignedBody, SignedDelivery
from gateway.sign.keys import KeyStore
from tests.test_intake import Hub


def test_relaxed_body_hash_in_chunks_matches_dkimpy():
    """Random bodies of spaces, tabs, blank lines and text, fed in random chunks: the hash dkimpy computes whole."""
    rnd = random.Random(21)
    pieces = [b"a", b"b", b" ", b"\t", b"\r\n", b"  ", b"\r\n\r\n", b"x y", b" \t \r\n"]
    for _ in range(3000):
        body = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 40)))
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        h = RelaxedBodyHash()
        pos = 0
        while pos < len(body):
            n = rnd.randint(1, 7)
            h.update(body[pos : pos + n])
            pos += n
        assert h.digest() == hashlib.sha256(dkim.canonicalization.Relaxed.canonicalize_body(body)).digest(), body


def test_trailing_blank_lines_are_counted_not_kept():
    """A megabyte of blank lines at the end costs two counters, not a megabyte."""
    h = RelaxedBodyHash()
    h.update(b"text\r\n")
    for _ in range(16):
        h.update(b"\r\n" * 32768)
    assert h._breaks == 16 * 32768 + 1
    assert h.digest() == hashlib.sha256(b"text\r\n").digest()


class SignedHub(Hub):
    """The test hub, with a send connector for outside.example and DKIM keys for corp.example."""

    def __init__(self, tmp_path, kind="rsa", sign_local=False):
        super().__init__(tmp_path)
        store = KeyStore(tmp_path / "var" / "dkim")
        self.txt = store.new_key("corp.example", "s1", kind)
        cfg = testing.config(
            server={"name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": str(tmp_path / "var")},
            send_connectors=[{"name": "Internet", "address_spaces": ["outside.example"], "smart_hosts": ["192.0.2.25"]}],
            dkim={"selectors": {"corp.example": "s1"}, "sign_local": sign_local},
        )
        self.handler.configure(cfg)
        self.handler.router = Router(AcceptedDomains(cfg.accepted_domains), cfg.send_connectors)

    def dns(self, name, timeout=5):
        return self.txt.encode() if name == b"s1._domainkey.corp.example." else None

    def submit(self, rcpt: bytes, body: bytes):
        lines = self.send(b"EHLO fe\r\nMAIL FROM:<printer01@corp.example>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n" + body + b".\r\n")
        assert lines[-1].startswith("250 2.6.0 "), lines
        return self.scheduler.queued[-1]

    def delivered(self, envelope, local=False) -> bytes:
        """What a deliverer streams: SignedDelivery's body, read from the queue file."""
        seen = []

        class Deliverer:
            def deliver(self, envelope, recipients, body):
                with body.open() as f:
                    seen.append((envelope.size, f.read()))

        SignedDelivery(Deliverer(), local=local).deliver(envelope, [], StoredBody(self.store.body_path(envelope.queue_id), size=envelope.size))
        ((size, data),) = seen
        assert size == len(data)
        return data


MESSAGE = (
    b"From: Printer 1 <printer01@corp.example>\r\nTo: someone@outside.example\r\nSubject: toner   low\r\n"
    b"Message-ID: <m1@corp.example>\r\nDate: Tue, 17 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nTray 2 \t empty.\r\n\r\n..dot line\r\n\xe9t\xe9\r\n\r\n\r\n"
)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_mail_for_a_send_connector_is_signed_and_verifies(tmp_path, kind):
    """dkimpy verifies the stream a send connector gets; behind the signature, the queued bytes unchanged."""
    hub = SignedHub(tmp_path, kind)
    envelope = hub.submit(b"someone@outside.example", MESSAGE)
    signature = envelope.dkim.encode()
    assert signature.startswith(b"DKIM-Signature: v=1; a=" + (b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256"))
    unfolded = b" ".join(signature.split())
    assert b"c=relaxed/relaxed; d=corp.example; s=s1; t=1795000000;" in unfolded
    assert b"h=from : to : subject : message-id : date : mime-version : content-type : from;" in unfolded
    stored = hub.stored()
    assert stored.endswith(MESSAGE.replace(b"..dot", b".dot"))
    out = hub.delivered(envelope)
    assert out == signature + stored
    assert dkim.verify(out, dnsfunc=hub.dns)
    # A changed body or a second From no longer verifies.
    assert not dkim.verify(out.replace(b"empty", b"full!"), dnsfunc=hub.dns)
    assert not dkim.verify(signature + b"From: ceo@corp.example\r\n" + stored, dnsfunc=hub.dns)


def test_a_large_body_is_hashed_as_it_streams(tmp_path):
    """Past the queue's in-memory limit the body goes to the file in many writes; the signature still verifies."""
    hub = SignedHub(tmp_path)
    body = b"".join(b"line %06d   with  spaces \t\r\n" % i for i in range(40000))
    envelope = hub.submit(b"someone@outside.example", b"From: printer01@corp.example\r\nSubject: big\r\n\r\n" + body)
    assert envelope.size > 1_000_000
    assert dkim.verify(hub.delivered(envelope), dnsfunc=hub.dns)


def test_mail_only_for_mailboxes_is_not_signed(tmp_path):
    hub = SignedHub(tmp_path)
    envelope = hub.submit(b"alice@corp.example", MESSAGE)
    assert envelope.dkim == ""
    assert hub.delivered(envelope, local=True) == hub.stored()


def test_mailbox_copies_stay_unsigned_unless_sign_local(tmp_path):
    """A message to both: the send connector's copy carries the signature, the mailbox's does not; with sign_local both."""
    hub = SignedHub(tmp_path)
    envelope = hub.submit(b"someone@outside.example", MESSAGE)
    assert hub.delivered(envelope, local=True) == hub.stored()
    hub = SignedHub(tmp_path / "local", sign_local=True)
    envelope = hub.submit(b"alice@corp.example", MESSAGE)
    assert envelope.dkim_local is True
    assert dkim.verify(hub.delivered(envelope, local=True), dnsfunc=hub.dns)


def test_a_from_domain_without_a_key_is_not_signed(tmp_path):
    hub = SignedHub(tmp_path)
    envelope = hub.submit(b"someone@outside.example", MESSAGE.replace(b"printer01@corp.example", b"x@elsewhere.example"))
    assert envelope.dkim == ""


def test_signed_body_reads_in_small_pieces():
    """The signature field, then the stored bytes, whatever the read size."""
    body = SignedBody(b"DKIM-Signature: x\r\n", StoredBody("unused", b"Subject: s\r\n\r\nbody\r\n"))
    with body.open() as f:
        parts = []
        while chunk := f.read(3):
            parts.append(chunk)
    assert b"".join(parts) == b"DKIM-Signature: x\r\nSubject: s\r\n\r\nbody\r\n" and body.size == len(b"".join(parts))
