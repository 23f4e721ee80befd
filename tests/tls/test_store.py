"""The certificate store: self-signed default, selection, and files it cannot use."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.tls.store import CertificateError, CertificateStore, make_self_signed, read_pem

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


def test_an_empty_store_gets_a_self_signed_certificate_for_the_fqdn(tmp_path):
    store = CertificateStore(tmp_path / "certs")
    made = store.ensure_default("mail.corp.example", NOW)
    assert made.subject == made.issuer == "CN=mail.corp.example"
    assert made.dns_names == ("mail.corp.example",)
    assert made.not_after - NOW > datetime.timedelta(days=5 * 365 - 1)
    assert made.path.name == f"{made.thumbprint}.pem" and len(made.thumbprint) == 40
    assert made.path.stat().st_mode & 0o777 == 0o600
    # The second start finds it and makes nothing.
    assert store.ensure_default("mail.corp.example", NOW) is None
    assert [c.thumbprint for c in store.certificates] == [made.thumbprint]


def test_subject_is_printed_as_exchange_prints_it(tmp_path):
    cert = CertificateStore(tmp_path).write(make_self_signed("CN=smtp.corp.example, O=Corp, S=WA, C=US", ("smtp.corp.example",), NOW))
    assert cert.subject == "CN=smtp.corp.example, O=Corp, S=WA, C=US"
    assert cert.certificate.subject.rfc4514_string() == "CN=smtp.corp.example,O=Corp,ST=WA,C=US"


def test_selection_by_thumbprint_by_name_and_by_fqdn(tmp_path):
    store = CertificateStore(tmp_path)
    mail = store.write(make_self_signed("CN=mail.corp.example", (), NOW))
    wild = store.write(make_self_signed("CN=wild, O=Corp", ("*.apps.corp.example",), NOW))
    assert store.select(None, "mail.corp.example", NOW) == mail
    assert store.select(None, "relay.apps.corp.example", NOW) == wild
    assert store.select(wild.thumbprint.lower(), "mail.corp.example", NOW) == wild
    assert store.select("<I>O=Corp, CN=wild<S>cn=WILD,o=corp", "mail.corp.example", NOW) == wild
    with pytest.raises(CertificateError, match="matches '<I>CN=other<S>CN=wild'"):
        store.select("<I>CN=other<S>CN=wild", "mail.corp.example", NOW)


def test_expired_certificates_lose_to_valid_ones(tmp_path):
    store = CertificateStore(tmp_path)
    old = store.write(make_self_signed("CN=mail.corp.example", (), NOW - datetime.timedelta(days=30), days=10))
    new = store.write(make_self_signed("CN=other.corp.example", (), NOW))
    assert store.select(None, "mail.corp.example", NOW) == new
    assert store.select(None, "mail.corp.example", NOW - datetime.timedelta(days=25)) == old


def _ec_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_files_it_cannot_use_say_why(tmp_path):
    pem = make_self_signed("CN=mail.corp.example", (), NOW)
    cert_only = pem[pem.index(b"-----BEGIN CERTIFICATE") :]
    (tmp_path / "a.pem").write_bytes(cert_only)
    (tmp_path / "b.pem").write_bytes(_ec_pem() + cert_only)
    (tmp_path / "c.pem").write_bytes(b"hello")
    (tmp_path / "d.pem").write_bytes(pem)
    store = CertificateStore(tmp_path).load()
    assert [c.path.name for c in store.certificates] == ["d.pem"]
    assert store.problems == (
        f"{tmp_path}/a.pem: no private key in the file (put the key and the certificate in one PEM file)",
        f"{tmp_path}/b.pem: the private key belongs to none of the certificates in the file",
        f"{tmp_path}/c.pem: no PEM certificate in the file",
    )


def test_a_chain_after_the_leaf_is_kept(tmp_path):
    leaf = make_self_signed("CN=mail.corp.example", (), NOW)
    other = make_self_signed("CN=Corp CA", (), NOW)
    ca_cert = other[other.index(b"-----BEGIN CERTIFICATE") :]
    stored = read_pem(tmp_path / "x.pem", leaf + ca_cert)
    assert stored.subject == "CN=mail.corp.example"
    assert [x509.Name.rfc4514_string(c.subject) for c in stored.chain] == ["CN=Corp CA"]


def test_the_default_certificate_is_an_rsa_and_an_ecdsa_pair_in_one_private_file(tmp_path):
    store = CertificateStore(tmp_path / "certs")
    made = store.ensure_default("mail.corp.example", NOW)
    assert made.key_type == "RSA" and [c.key_type for c in made.companions] == ["ECDSA"]
    (ecdsa,) = made.companions
    assert ecdsa.subject == made.subject and ecdsa.dns_names == made.dns_names and ecdsa.thumbprint != made.thumbprint
    assert ecdsa.path == made.path and made.path.stat().st_mode & 0o777 == 0o600
    assert made.chain == ecdsa.chain == ()
    # The file is known by its RSA certificate, as before.
    assert made.path.name == f"{made.thumbprint}.pem"
    assert store.select(None, "mail.corp.example", NOW) == made
    # `certificate list` shows both thumbprints: either names the file, which serves both.
    assert store.select(ecdsa.thumbprint, "other.corp.example", NOW) == made


def test_an_rsa_only_file_has_no_companion_and_reads_as_before(tmp_path):
    stored = read_pem(tmp_path / "x.pem", make_self_signed("CN=mail.corp.example", (), NOW))
    assert stored.key_type == "RSA" and stored.companions == ()


def test_a_second_key_of_the_same_type_or_without_its_certificate_is_ignored(tmp_path):
    first = make_self_signed("CN=mail.corp.example", (), NOW)
    second = make_self_signed("CN=other.corp.example", (), NOW)
    stored = read_pem(tmp_path / "x.pem", first + second + _ec_pem())
    assert stored.subject == "CN=mail.corp.example" and stored.companions == ()
    assert [x509.Name.rfc4514_string(c.subject) for c in stored.chain] == ["CN=other.corp.example"]


def test_an_unknown_key_type_is_refused():
    with pytest.raises(CertificateError, match="key type DSA is not supported"):
        make_self_signed("CN=mail.corp.example", (), NOW, key_types=("DSA",))


def _only(key_type: str, subject: str, sans: tuple[str, ...], now: datetime.datetime, days: int = 825) -> bytes:
    return make_self_signed(subject, sans, now, days=days, key_types=(key_type,))


def test_an_admin_file_with_an_ecdsa_certificate_for_other_names_serves_only_its_own(tmp_path):
    # Review: a second key pair in an admin's file is served to every ECDSA client only if it
    # names the same hosts; one for other names stays what it always was (ignored, its certificate in the chain).
    rsa_pem = _only("RSA", "CN=mail.corp.example", (), NOW)
    other = _only("ECDSA", "CN=intranet.corp.example", (), NOW)
    stored = read_pem(tmp_path / "x.pem", rsa_pem + other)
    assert stored.key_type == "RSA" and stored.companions == ()
    assert [x509.Name.rfc4514_string(c.subject) for c in stored.chain] == ["CN=intranet.corp.example"]
    # The same names, in another order or case, are a companion.
    same = _only("ECDSA", "CN=mail.corp.example", ("MAIL.corp.example",), NOW)
    assert [c.key_type for c in read_pem(tmp_path / "y.pem", rsa_pem + same).companions] == ["ECDSA"]


def test_an_expired_companion_is_not_served_beside_a_valid_certificate(tmp_path):
    store = CertificateStore(tmp_path)
    rsa_pem = _only("RSA", "CN=mail.corp.example", (), NOW)
    expired = _only("ECDSA", "CN=mail.corp.example", (), NOW - datetime.timedelta(days=30), days=10)
    written = store.write(rsa_pem + expired)
    assert [c.key_type for c in written.companions] == ["ECDSA"]
    chosen = store.select(None, "mail.corp.example", NOW)
    assert chosen.thumbprint == written.thumbprint and chosen.companions == ()
    # While it was valid, it was served.
    assert [c.key_type for c in store.select(None, "mail.corp.example", NOW - datetime.timedelta(days=25)).companions] == ["ECDSA"]
    assert store.select(written.thumbprint, "mail.corp.example", NOW).companions == ()
