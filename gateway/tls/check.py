"""
Does the certificate store hold what the configuration names?

One check for start-up, `exgateway config check` and reload: a receive
connector that serves TLS with a `tls_certificate_name` (a thumbprint or
`<I>issuer<S>subject`), or a send connector with a
`tls_client_certificate_name`, that matches no certificate in the store is a
configuration error, named by file, key and reason. Without this, config
check and reload accepted such a file and every STARTTLS then got 454 with
the reason only in the log.

A connector without `tls_certificate_name` picks a certificate by its FQDN
and is not checked here: with an empty store the gateway makes a
self-signed one at start-up.
"""

from __future__ import annotations

from gateway.config import Config, ConfigProblem
from gateway.tls.certname import parse_certificate_identifier
from gateway.tls.store import CertificateStore


def certificate_problems(config: Config, store: CertificateStore | None = None) -> list[ConfigProblem]:
    """
    One ConfigProblem per enabled TLS frontend connector whose
    tls_certificate_name, and per enabled send connector whose
    tls_client_certificate_name, is not in `store` (default: the configured store,
    read now). Reading the store changes nothing on disk.
    """
    if store is None:
        store = CertificateStore(config.certificate_dir).load()
    problems = []
    wanted = [
        (f'receive_connectors[{index}] ("{c.name}").tls_certificate_name', c.tls_certificate_name)
        for index, c in enumerate(config.receive_connectors) if c.enabled and c.role == "frontend" and c.uses_tls
    ] + [
        (f'send_connectors[{index}] ("{c.name}").tls_client_certificate_name', c.tls_client_certificate_name)
        for index, c in enumerate(config.send_connectors) if c.enabled
    ] + [
        (f'send_connectors[{index}] ("{c.name}").oauth_client_certificate_name', c.oauth_client_certificate_name)
        for index, c in enumerate(config.send_connectors) if c.enabled
    ]
    for key, name in wanted:
        if not name or store.find(parse_certificate_identifier(name)) is not None:
            continue
        count = len(store.certificates)
        held = f"it holds {count} certificate{'s' if count != 1 else ''}: `exgateway certificate list` shows them" if count else "it is empty"
        reason = f"no certificate in {store.directory} matches {name!r} ({held})"
        if store.problems:
            reason += "; unreadable there: " + "; ".join(store.problems)
        problems.append(ConfigProblem(str(config.path), key, reason))
    return problems
