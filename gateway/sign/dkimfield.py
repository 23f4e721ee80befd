"""
The DKIM-Signature field of one message: the header From's domain, the
header section canonicalized and signed (RFC 6376, RFC 8463).

Apart from gateway/sign/dkim.py because of dkimpy: it imports dnspython
and PyNaCl (about 4 MB of every process), and only a node with a [dkim]
selector needs it, so dkim.py loads this module at its first signing.
dkimpy folds the field and canonicalizes the header; the private-key
operation is `cryptography`'s.
"""

from __future__ import annotations

import base64
import hashlib
from email.utils import getaddresses

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.sign.keys import key_kind

# RFC 6376 5.4.1's recommended fields, as dkimpy lists them; From is oversigned.
SIGNED_FIELDS = frozenset(dkim.DKIM.SHOULD)
_POLICY = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


def from_domain(header: bytes) -> str | None:
    """The domain of the header From's one address, or None (absent, several, unparsable)."""
    values = [y for x, y in dkim.rfc822_parse(header + b"\r\n")[0] if x.lower() == b"from"]
    if len(values) != 1:
        return None
    addresses = [a for _, a in getaddresses([values[0].decode("utf-8", "replace")]) if a]
    if len(addresses) != 1 or addresses[0].count("@") != 1:
        return None
    return addresses[0].rpartition("@")[2].lower().rstrip(">") or None


def sign_header(header: bytes, body_hash: bytes, domain: str, selector: str, key, now: float) -> bytes:
    """The DKIM-Signature field (ending in CRLF) for a header section and the body's hash."""
    headers = dkim.rfc822_parse(header + b"\r\n")[0]
    present = [x.lower() for x, _ in headers if x.lower() in SIGNED_FIELDS]
    include = (*present, b"from")
    kind = key_kind(key)
    algorithm = b"ed25519-sha256" if kind == "ed25519" else b"rsa-sha256"
    fields = [
        (b"v", b"1"),
        (b"a", algorithm),
        (b"c", b"relaxed/relaxed"),
        (b"d", domain.encode("ascii")),
        (b"s", selector.encode("ascii")),
        (b"t", str(int(now)).encode("ascii")),
        (b"h", b" : ".join(include)),
        (b"bh", base64.b64encode(body_hash)),
        (b"b", b""),
    ]
    name = b"DKIM-Signature"
    value = dkim.fold(b"; ".join(b"=".join(x) for x in fields), namelen=len(name))
    value = dkim.RE_BTAG.sub(b"\\1", value)
    canonical = _POLICY.canonicalize_headers(headers)
    signed = dkim.select_headers(canonical, include)
    (own,) = _POLICY.canonicalize_headers([(name, b" " + value)])
    data = b"".join(x + b":" + y for x, y in signed) + own[0] + b":" + own[1].rstrip()
    if kind == "ed25519":
        signature = key.sign(hashlib.sha256(data).digest())
    else:
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    fields[-1] = (b"b", base64.b64encode(signature))
    return name + b": " + dkim.fold(b"; ".join(b"=".join(x) for x in fields) + b"\r\n", namelen=len(name), linesep=b"\r\n")
