"""
DKIM signing (RFC 6376, RFC 8463) at the hub's intake, body streamed.

Why signed here and stored beside the message, not written into it: the
queue file is written as the message arrives (gateway/queue/store.py: body
first, envelope last as the commit marker), so the header section is on
disk before the body's hash can be known, and a DKIM-Signature field cannot
be put in front of it afterwards without rewriting the file. So the intake
hashes the body (relaxed canonicalization, incrementally, chunk by chunk as
it streams to the queue file), signs the header section it has buffered
anyway, and stores the finished DKIM-Signature field in the envelope, which
is committed with the message before the 250: signed once, before queueing,
durable with it, the same signature on every retry. Deliverers put the
field in front of the queued bytes as they stream them out (SignedDelivery):
the message itself stays byte for byte as received.

Only mail with a recipient routed to a send connector is signed, and only
the copies sent through send connectors carry the signature, unless
`[dkim] sign_local = true` (then Maildir and the mailbox next hop get it
too). The signing domain is the header From's domain (one address in From;
the DMARC-aligned identity); a domain without an active selector is not
signed.

Signatures are relaxed/relaxed, rsa-sha256 or ed25519-sha256; the header
fields signed are dkimpy's RFC 6376 recommended set present in the message,
with From signed once more than it occurs (oversigned: a second From added
on the way breaks the signature). The field is made in
gateway/sign/dkimfield.py, loaded at the first signing: dkimpy builds and
folds it and canonicalizes the header (dkim.CanonicalizationPolicy,
select_headers, fold); the private-key operation is `cryptography`'s
(dkimpy's own RSA is pure Python, about 20 ms a signature on the reactor
thread).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

from twisted.logger import Logger
from zope.interface import implementer

from gateway.interfaces import IDeliverer
from gateway.sign.keys import KeyStore, check_domain, check_selector

log = Logger(namespace="exgateway.dkim")

DKIM_KEYS = {"directory", "selectors", "sign_local"}
_CRLF_BLOCK = b"\r\n" * 4096


@dataclass(frozen=True)
class DKIMConfig:
    """[dkim]: where keys are kept, the active selector per domain, whether local copies are signed."""

    directory: Path = Path("var/dkim")
    selectors: dict = field(default_factory=dict)
    sign_local: bool = False


def read_config(reader, raw: dict, var_dir: Path) -> DKIMConfig:
    """[dkim], problems reported through the config reader; an active selector needs its key in the store."""
    data = raw.get("dkim", {})
    if not isinstance(data, dict):
        reader.problem("dkim", "must be a table ([dkim])")
        return DKIMConfig(directory=var_dir / "dkim")
    reader.table(data, "dkim", DKIM_KEYS)
    directory = var_dir / reader.get(data, "dkim", "directory", _text, "dkim")
    sign_local = reader.get(data, "dkim", "sign_local", _flag, False)
    selectors = {}
    raw_selectors = data.get("selectors", {})
    if not isinstance(raw_selectors, dict):
        reader.problem("dkim.selectors", 'must be a table of domain = "selector"')
        raw_selectors = {}
    store = KeyStore(directory)
    for domain, selector in raw_selectors.items():
        try:
            domain, selector = check_domain(domain), check_selector(selector)
        except ValueError as e:
            reader.problem(f"dkim.selectors.{domain}", str(e))
            continue
        if not store.path(domain, selector).is_file():
            reader.problem(
                f"dkim.selectors.{domain}",
                f"no key for selector {selector!r} in {store.path(domain, selector)} "
                f"(exgateway dkim new-key --domain {domain} --selector {selector})",
            )
            continue
        selectors[domain] = selector
    return DKIMConfig(directory, selectors, sign_local)


def _text(value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


class RelaxedBodyHash:
    """
    SHA-256 of a body under relaxed canonicalization (RFC 6376 3.4.4), fed
    in chunks of any size. Runs of spaces and tabs become one space, white
    space at line ends and empty lines at the end go; what may still turn
    out to be trailing (white space and line breaks after the last visible
    character) is kept as two counters, never as bytes, so the memory used
    does not grow with the message. The queue holds CRLF line ends only
    (bare CR and LF are normalized or refused at DATA).
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._breaks = 0  # line breaks since the last visible character
        self._space = False  # white space since the last break (or visible character)
        self._content = False

    def update(self, chunk: bytes) -> None:
        data = chunk.replace(b"\r", b"")
        visible = len(data.rstrip(b" \t\n"))
        if visible == 0:
            self._pending(data)
            return
        head, tail = data[:visible], data[visible:]
        while self._breaks:
            n = min(self._breaks, len(_CRLF_BLOCK) // 2)
            self._hash.update(_CRLF_BLOCK[: 2 * n])
            self._breaks -= n
        if self._space:
            head = b" " + head
        # Only complete runs are reduced: head ends in a visible character and nothing is pending before it.
        # bytes.replace in a loop measured faster than a regex substitution here (most text has few runs).
        head = head.replace(b"\t", b" ")
        while b"  " in head:
            head = head.replace(b"  ", b" ")
        head = head.replace(b" \n", b"\n").replace(b"\n", b"\r\n")
        self._hash.update(head)
        self._content = True
        self._space = False
        self._pending(tail)

    def _pending(self, data: bytes) -> None:
        breaks = data.count(b"\n")
        if breaks:
            self._breaks += breaks
            self._space = bool(data[data.rfind(b"\n") + 1 :])
        elif data:
            self._space = True

    def digest(self) -> bytes:
        """The body hash; a body with visible content ends in exactly one CRLF, an empty one hashes nothing."""
        h = self._hash.copy()
        if self._content:
            h.update(b"\r\n")
        return h.digest()


class BodySigning:
    """One message being signed: the body hash fed as the body streams, the field made at the end."""

    def __init__(self, header: bytes, domain: str, selector: str, key) -> None:
        self.header = header
        self.domain = domain
        self.selector = selector
        self.key = key
        self.body = RelaxedBodyHash()

    def update(self, data: bytes) -> None:
        self.body.update(data)

    def finish(self, now: float) -> str:
        from gateway.sign.dkimfield import sign_header  # dkimpy: see Signer.begin

        return sign_header(self.header, self.body.digest(), self.domain, self.selector, self.key, now).decode("ascii")


class Signer:
    """The [dkim] settings and keys of one configuration."""

    def __init__(self, config: DKIMConfig | None = None) -> None:
        config = config or DKIMConfig()
        self.sign_local = config.sign_local
        self.keys = {}
        store = KeyStore(config.directory)
        for domain, selector in config.selectors.items():
            try:
                self.keys[domain] = (selector, store.load(domain, selector))
            except (OSError, ValueError) as e:
                log.error("dkim: cannot read the key of {domain} selector {selector}: {reason}; its mail goes unsigned",
                          domain=domain, selector=selector, reason=str(e))

    def __bool__(self) -> bool:
        return bool(self.keys)

    def begin(self, header: bytes) -> BodySigning | None:
        """A signing for a message with this header section, or None (its From domain has no active key)."""
        if not self.keys:
            return None
        # dkimpy (with dnspython and PyNaCl, about 4 MB a process) is loaded
        # only by a node that signs: most relays have no [dkim] selectors.
        from gateway.sign.dkimfield import from_domain

        domain = from_domain(header)
        if domain is None or domain not in self.keys:
            return None
        selector, key = self.keys[domain]
        return BodySigning(header, domain, selector, key)


class _Prefixed(io.RawIOBase):
    """The signature field, then the queued bytes."""

    def __init__(self, prefix: bytes, body) -> None:
        self._prefix = memoryview(prefix)
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class SignedBody:
    """A StoredBody with the DKIM-Signature field in front."""

    def __init__(self, prefix: bytes, body) -> None:
        self.prefix = prefix
        self.body = body
        self.size = len(prefix) + body.size

    def open(self):
        return io.BufferedReader(_Prefixed(self.prefix, self.body.open()), 64 * 1024)


@implementer(IDeliverer)
class SignedDelivery:
    """
    A deliverer that sends a signed message's stored DKIM-Signature field in
    front of its bytes. `local`: a mailbox deliverer, which adds it only
    for messages signed with sign_local.
    """

    def __init__(self, deliverer, local: bool = False) -> None:
        self.deliverer = deliverer
        self.local = local

    def deliver(self, envelope, recipients, body):
        signature = envelope.dkim
        if signature and (not self.local or envelope.dkim_local):
            prefix = signature.encode("ascii")
            body = SignedBody(prefix, body)
            envelope = replace(envelope, size=envelope.size + len(prefix))
        return self.deliverer.deliver(envelope, recipients, body)

    def close(self) -> None:
        self.deliverer.close()
