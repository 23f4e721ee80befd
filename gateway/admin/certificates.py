"""
`exgateway certificate list | new-self-signed | import FILE`: the certificate store.

`list` prints what Get-ExchangeCertificate prints: Thumbprint, Services
(`....S..` where an SMTP connector serves the certificate, Exchange's
letters), Subject and NotAfter, plus which connectors use it. A running
gateway picks changes up at `exgateway reload`.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from gateway.admin.table import print_table
from gateway.tls.store import CertificateError, CertificateStore, make_self_signed, read_pem


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _users(config, store: CertificateStore) -> dict[str, list[str]]:
    """Thumbprint -> names of the enabled TLS connectors that would serve it now."""
    used: dict[str, list[str]] = {}
    for c in config.receive_connectors:
        if c.enabled and c.role == "frontend" and c.uses_tls:
            try:
                cert = store.select(c.tls_certificate_name or None, c.fqdn, _now())
            except (CertificateError, ValueError) as e:
                print(f"connector {c.identity}: {e}", file=sys.stderr)
                continue
            used.setdefault(cert.thumbprint, []).append(c.name)
    return used


def _list(args, config) -> int:
    store = CertificateStore(config.certificate_dir).load()
    for problem in store.problems:
        print(f"unusable: {problem}", file=sys.stderr)
    if not store.certificates:
        print(f"no certificates in {store.directory}; the gateway creates a self-signed one for {config.fqdn} when it starts")
        return 0
    used = _users(config, store)
    # A file's companion (its ECDSA certificate beside the RSA one) is served with it: a row of its own, as
    # Get-ExchangeCertificate lists every certificate, with the services of the file.
    rows = [
        (shown.thumbprint, "....S.." if c.thumbprint in used else ".......", shown.subject,
         shown.not_after.strftime("%Y-%m-%d %H:%M:%S"), ", ".join(used.get(c.thumbprint, [])))
        for c in store.certificates
        for shown in (c, *c.companions)
    ]
    print_table(("Thumbprint", "Services", "Subject", "NotAfter", "Connectors"), rows)
    return 0


def _new_self_signed(args, config) -> int:
    store = CertificateStore(config.certificate_dir)
    try:
        pem = make_self_signed(args.subject, tuple(args.san or ()), _now(), args.days)
        cert = store.write(pem)
    except CertificateError as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return 1
    print(f"created {cert.path}\nThumbprint {cert.thumbprint}  Subject {cert.subject}  NotAfter {cert.not_after:%Y-%m-%d}")
    return 0


def _import(args, config) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
        read_pem(path, data)
        cert = CertificateStore(config.certificate_dir).write(data)
    except OSError as e:
        print(f"exgateway: {path}: {e.strerror}", file=sys.stderr)
        return 1
    except CertificateError as e:
        print(f"exgateway: {e}", file=sys.stderr)
        return 1
    print(f"imported {path} as {cert.path}\nThumbprint {cert.thumbprint}  Subject {cert.subject}  NotAfter {cert.not_after:%Y-%m-%d}")
    return 0


def add_commands(commands, common, with_config) -> None:
    cert = commands.add_parser("certificate", help="the TLS certificate store", parents=[common])
    actions = cert.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Thumbprint, Services, Subject, NotAfter", parents=[common]).set_defaults(run=with_config(_list))
    new = actions.add_parser("new-self-signed", help="make a self-signed certificate in the store", parents=[common])
    new.add_argument("--subject", required=True, help="e.g. CN=mail.corp.example, O=Corp, C=US")
    new.add_argument("--san", nargs="+", metavar="DNSNAME", help="subject alternative names (the CN is added)")
    new.add_argument("--days", type=int, default=5 * 365, help="validity (default: five years, as Exchange)")
    new.set_defaults(run=with_config(_new_self_signed))
    imp = actions.add_parser("import", help="add a PEM file holding a private key and its certificate (and chain)", parents=[common])
    imp.add_argument("file")
    imp.set_defaults(run=with_config(_import))


__all__ = ["add_commands"]
