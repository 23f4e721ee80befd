"""
The DKIM key store: one private key per (domain, selector), in
`<var_dir>/dkim/<domain>/<selector>.key`, PEM, mode 0600 in 0700 directories
(gateway/files.py), whatever the umask.

A key is RSA-2048 (PKCS#1 PEM, what every verifier knows) or Ed25519
(RFC 8463, PKCS#8 PEM; publish an RSA key beside it, as not every verifier
knows Ed25519 yet). The public half is what goes into DNS, as the TXT
record `<selector>._domainkey.<domain>`; `record` gives it in zone-file
form, split into strings of at most 255 characters as DNS requires.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.address import valid_domain
from gateway.files import create_new, make_directory

KEY_TYPES = ("rsa", "ed25519")
RSA_BITS = 2048
# A selector is a dot-separated list of DNS labels (RFC 6376 3.1).
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def check_selector(selector: str) -> str:
    if not isinstance(selector, str) or not _SELECTOR.match(selector):
        raise ValueError(f"{selector!r} is not a selector (DNS labels: letters, digits, hyphens, dots)")
    return selector


def check_domain(domain: str) -> str:
    if not isinstance(domain, str) or not valid_domain(domain):
        raise ValueError(f"{domain!r} is not a domain")
    return domain.lower()


@dataclass(frozen=True)
class StoredKey:
    domain: str
    selector: str
    kind: str  # "rsa" or "ed25519"
    created: float  # the file's modification time
    path: Path


def load_private_key(data: bytes):
    """A PEM private key, RSA or Ed25519; ValueError for anything else."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError("not an RSA or Ed25519 key")
    return key


def key_kind(key) -> str:
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"


def txt_value(key) -> str:
    """The TXT record's value for a private key's public half (RFC 6376 3.6.1, RFC 8463)."""
    public = key.public_key()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def txt_strings(value: str) -> list[str]:
    """A TXT value as DNS character-strings of at most 255 characters each."""
    return [value[i : i + 255] for i in range(0, len(value), 255)] or [""]


def record(domain: str, selector: str, value: str) -> str:
    """The record in zone-file form: name, type, and the value as quoted strings."""
    strings = " ".join(f'"{s}"' for s in txt_strings(value))
    return f"{selector}._domainkey.{domain}. IN TXT ( {strings} )"


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, domain: str, selector: str) -> Path:
        return self.directory / domain.lower() / f"{selector}.key"

    def new_key(self, domain: str, selector: str, kind: str = "rsa") -> str:
        """
        Make and store a key; the TXT value to publish. An existing key is
        never replaced (FileExistsError): a selector's key is what DNS says
        it is until the selector is retired, so a new key takes a new selector.
        """
        domain, selector = check_domain(domain), check_selector(selector)
        if kind not in KEY_TYPES:
            raise ValueError(f"{kind!r} is not one of {', '.join(KEY_TYPES)}")
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path = self.path(domain, selector)
        make_directory(path.parent)
        fd = create_new(path)
        with open(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        return txt_value(key)

    def load(self, domain: str, selector: str):
        """The private key of (domain, selector); OSError or ValueError if it is missing or unreadable."""
        return load_private_key(self.path(domain, selector).read_bytes())

    def keys(self) -> list[StoredKey]:
        """Every key in the store, by domain then selector; unreadable files left out."""
        found: list[StoredKey] = []
        if not self.directory.is_dir():
            return found
        for domain_dir in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            for path in sorted(domain_dir.glob("*.key")):
                try:
                    key = load_private_key(path.read_bytes())
                except (OSError, ValueError):
                    continue
                found.append(StoredKey(domain_dir.name, path.name[: -len(".key")], key_kind(key), path.stat().st_mtime, path))
        return found
