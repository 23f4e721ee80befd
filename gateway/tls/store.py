"""
The certificate store: a directory of PEM files, as Exchange has its
machine certificate store.

Each file holds one certificate with its private key, and optionally the
chain after it (the order a CA delivers: leaf first). Files are read whole
at start-up and at each reload, so replacing a file and running
`exgateway reload` serves the new certificate to new connections; sessions
already in TLS keep theirs.

Identity is Exchange's: a certificate is known by its thumbprint (SHA-1 of
the DER form, 40 upper-case hex digits) and printed with subject and issuer
in .NET's order (`CN=..., O=..., C=...`). On first start with an empty
store the gateway makes a self-signed certificate for its FQDN, as Exchange
setup does, so STARTTLS works out of the box.

One file may hold a second key and certificate of another key type (the
self-signed default holds RSA 2048 and ECDSA P-256): OpenSSL keeps one
certificate per key type in a context and serves ECDSA to the clients that
offer it (its signature costs the server a fraction of RSA's) and RSA to the
rest (TLS 1.0 devices, RSA key exchange). The file's identity (thumbprint,
file name, TlsCertificateName) is its first key's certificate; the other is
its `companion`, served beside it.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.logger import Logger

from gateway.files import write_private_atomically
from gateway.tls.certname import (
    CertificateIdentifierError,
    TlsCertificateName,
    parse_certificate_identifier,
    parse_dn,
    parse_dn_pairs,
)

log = Logger(namespace="exgateway.tls")

SELF_SIGNED_DAYS = 5 * 365  # Exchange's self-signed certificate lasts five years.
# .NET's short names, which Get-ExchangeCertificate prints.
_SHORT = {
    NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "S", NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E", NameOID.DOMAIN_COMPONENT: "DC", NameOID.SERIAL_NUMBER: "SERIALNUMBER",
}
_OID_OF = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
           "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME,
           "EMAILADDRESS": NameOID.EMAIL_ADDRESS, "DC": NameOID.DOMAIN_COMPONENT}


class CertificateError(Exception):
    """A certificate file or request that cannot be used; the message says why."""


def dotnet_name(name: x509.Name) -> str:
    """A DN as Get-ExchangeCertificate prints it: most specific first, `S=` for the state."""
    parts = []
    for rdn in reversed(name.rdns):
        for attr in rdn:
            short = _SHORT.get(attr.oid, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            if any(ch in value for ch in ',+;"'):
                value = '"' + value.replace('"', '\\"') + '"'
            parts.append(f"{short}={value}")
    return ", ".join(parts)


def thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


@dataclass(frozen=True)
class StoredCertificate:
    path: Path
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_pem: bytes = field(repr=False)
    # Certificates of other key types from the same file, each with its own key (served beside this one).
    companions: tuple[StoredCertificate, ...] = ()

    # Cached: every TLS session logs the thumbprint and subject (issue 22: 0.15 ms of a session's ~4 ms).
    @functools.cached_property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)

    @functools.cached_property
    def subject(self) -> str:
        return dotnet_name(self.certificate.subject)

    @property
    def issuer(self) -> str:
        return dotnet_name(self.certificate.issuer)

    @property
    def not_before(self) -> datetime.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def self_signed(self) -> bool:
        return self.certificate.issuer == self.certificate.subject

    @property
    def dns_names(self) -> tuple[str, ...]:
        """SAN DNS names; the subject CN only if there is no SAN (as TLS clients read it)."""
        return _dns_names(self.certificate)

    def matches_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for name in self.dns_names:
            if name == host:
                return True
            if name.startswith("*.") and host.count(".") >= 2 and host.split(".", 1)[1] == name[2:]:
                return True
        return False

    def valid_at(self, now: datetime.datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def served_at(self, now: datetime.datetime) -> StoredCertificate:
        """
        This file as served at `now`: without a companion that is not valid
        then. The file's own certificate is chosen knowingly (select), even
        expired as a last resort; a companion is only ever served beside it,
        and an expired one would be what every ECDSA client gets.
        """
        valid = tuple(c for c in self.companions if c.valid_at(now))
        return self if valid == self.companions else replace(self, companions=valid)

    @property
    def key_type(self) -> str:
        return _key_type(self.certificate.public_key())

    def served(self, connection) -> StoredCertificate:
        """Which of this file's certificates a finished handshake on `connection` (pyOpenSSL) served."""
        if not self.companions:
            return self
        local = connection.get_certificate()
        if local is None:
            return self
        digest = local.digest("sha1").replace(b":", b"").decode("ascii")
        return next((c for c in self.companions if c.thumbprint == digest), self)

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.certificate, *self.chain))


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_type(public_key) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ECDSA"
    return type(public_key).__name__


def read_pem(path: Path, data: bytes | None = None) -> StoredCertificate:
    """
    One PEM file: a private key and the certificate it belongs to, plus any
    chain. A further key whose certificate is in the file and of another key
    type than those before it makes a companion; other further keys are
    ignored, as they always were.
    """
    try:
        data = path.read_bytes() if data is None else data
    except OSError as e:
        raise CertificateError(f"{path}: cannot read: {e.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{path}: no PEM certificate in the file") from None
    key_blocks = [b for b in _pem_blocks(data) if b"PRIVATE KEY" in b.split(b"\n", 1)[0]]
    if not key_blocks:
        raise CertificateError(f"{path}: no private key in the file (put the key and the certificate in one PEM file)")
    try:
        key = serialization.load_pem_private_key(key_blocks[0], password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"{path}: the private key cannot be read ({e}); an encrypted key must be decrypted first") from None
    leaf = _leaf_of(key, certs)
    if leaf is None:
        raise CertificateError(f"{path}: the private key belongs to none of the certificates in the file")
    pairs = [(leaf, key)]
    for block in key_blocks[1:]:
        try:
            other = serialization.load_pem_private_key(block, password=None)
        except (ValueError, TypeError):
            continue
        other_leaf = _leaf_of(other, certs)
        if (
            other_leaf is not None
            and _key_type(other.public_key()) not in {_key_type(k.public_key()) for _, k in pairs}
            # Served to the clients that take its key type, so only for the very hosts the file's own certificate names.
            and set(_dns_names(other_leaf)) == set(_dns_names(leaf))
        ):
            pairs.append((other_leaf, other))
    leaves = [c for c, _ in pairs]
    chain = tuple(c for c in certs if all(c is not leaf for leaf in leaves))
    companions = tuple(StoredCertificate(path, c, chain, _key_pem(k)) for c, k in pairs[1:])
    return StoredCertificate(path, leaf, chain, _key_pem(key), companions)


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(a.value).lower() for a in cns)


def _leaf_of(key, certs: list[x509.Certificate]) -> x509.Certificate | None:
    key_der = _public_der(key.public_key())
    return next((c for c in certs if _public_der(c.public_key()) == key_der), None)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks: list[bytes] = []
    start = 0
    while True:
        begin = data.find(b"-----BEGIN ", start)
        if begin < 0:
            return blocks
        end_marker = data.find(b"-----END ", begin)
        if end_marker < 0:
            return blocks
        end = data.find(b"-----", end_marker + 9)
        end = len(data) if end < 0 else end + 5
        blocks.append(data[begin:end] + b"\n")
        start = end


KEY_TYPES = ("RSA", "ECDSA")


def make_self_signed(subject: str, sans: tuple[str, ...], now: datetime.datetime, days: int = SELF_SIGNED_DAYS,
                     key_types: tuple[str, ...] = ("RSA",)) -> bytes:
    """
    A PEM file (key + certificate per key type, in the order given): RSA 2048,
    which every device that speaks TLS can use, and ECDSA P-256, whose
    handshake signature costs the server far less.
    """
    try:
        pairs = parse_dn_pairs(subject, "subject")
    except CertificateIdentifierError as e:
        raise CertificateError(str(e)) from None
    attributes = []
    for attribute, value in pairs:
        if attribute not in _OID_OF:
            raise CertificateError(f"subject attribute {attribute} is not supported for a new certificate")
        attributes.append(x509.NameAttribute(_OID_OF[attribute], value))
    # Written most specific first (.NET order); a certificate stores the most general first.
    name = x509.Name(list(reversed(attributes)))
    cns = [a.value for a in attributes if a.oid == NameOID.COMMON_NAME]
    dns = list(dict.fromkeys([*sans, *cns]))
    pem = b""
    for key_type in key_types:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if key_type == "RSA":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif key_type == "ECDSA":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise CertificateError(f"key type {key_type} is not supported (one of {', '.join(KEY_TYPES)})")
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if dns:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        cert = builder.sign(key, hashes.SHA256())
        pem += _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)
    return pem


class CertificateStore:
    """The PEM files of one directory, read at start-up and at each reload."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.certificates: tuple[StoredCertificate, ...] = ()
        self.problems: tuple[str, ...] = ()

    def load(self) -> CertificateStore:
        certs, problems = [], []
        paths = sorted(self.directory.glob("*.pem")) if self.directory.is_dir() else []
        for path in paths:
            try:
                certs.append(read_pem(path))
            except CertificateError as e:
                problems.append(str(e))
        self.certificates = tuple(certs)
        self.problems = tuple(problems)
        return self

    def write(self, pem: bytes) -> StoredCertificate:
        """Add a key+certificate PEM as <thumbprint>.pem, readable by the owner only."""
        stored = read_pem(Path("<new>"), pem)
        path = self.directory / f"{stored.thumbprint}.pem"
        write_private_atomically(path, pem, keep_owner=False)
        self.load()
        return next(c for c in self.certificates if c.path == path)

    def ensure_default(self, fqdn: str, now: datetime.datetime) -> StoredCertificate | None:
        """With an empty store, make the self-signed certificate for the FQDN; return it if made."""
        self.load()
        if self.certificates:
            return None
        # RSA first: the file's identity, and what a client without ECDSA gets.
        made = self.write(make_self_signed(f"CN={fqdn}", (fqdn,), now, key_types=KEY_TYPES))
        log.info("certificate store {directory} was empty: created a self-signed certificate for {fqdn}, thumbprint {thumbprint}",
                 directory=str(self.directory), fqdn=fqdn, thumbprint=made.thumbprint)
        return made

    def find(self, identifier: str | TlsCertificateName) -> StoredCertificate | None:
        """The file a thumbprint (its own or its companion's, as `certificate list` shows both) or a name selects."""
        if isinstance(identifier, str):
            return next((c for c in self.certificates
                         if c.thumbprint == identifier or any(x.thumbprint == identifier for x in c.companions)), None)
        for c in self.certificates:
            if (parse_dn(c.issuer, "issuer") == identifier.issuer and parse_dn(c.subject, "subject") == identifier.subject):
                return c
        return None

    def select(self, identifier: str | None, fqdn: str, now: datetime.datetime) -> StoredCertificate:
        """
        The certificate a connector serves: the one its TlsCertificateName or
        thumbprint names; else a valid one for its FQDN (a CA-issued one before
        a self-signed one, then the one valid longest); else any valid one.
        """
        if identifier:
            wanted = parse_certificate_identifier(identifier)
            found = self.find(wanted)
            if found is None:
                raise CertificateError(f"no certificate in {self.directory} matches {identifier!r}")
            return found.served_at(now)
        valid = [c for c in self.certificates if c.valid_at(now)]
        for pool in ([c for c in valid if c.matches_host(fqdn)], valid, list(self.certificates)):
            if pool:
                return max(pool, key=lambda c: (not c.self_signed, c.not_after)).served_at(now)
        raise CertificateError(f"the certificate store {self.directory} holds no usable certificate")
