"""
Which certificate each connector serves, built once and rebuilt on reload.

The protocol asks for a connector's TLS options at STARTTLS (or at connect,
for implicit TLS); this object answers from a cache keyed by what selects the
certificate (TlsCertificateName or thumbprint, and FQDN) and by the
connector's TLS profile, so connectors with different profiles never share
a context (nor resume each other's sessions). `reload()` re-reads the store,
so a replaced file reaches new connections without a restart.
"""

from __future__ import annotations

import datetime

from twisted.logger import Logger

from gateway.tls.context import ServerTLS
from gateway.tls.profiles import profile_for
from gateway.tls.store import CertificateError, CertificateStore, StoredCertificate

log = Logger(namespace="exgateway.tls")


class TLSProvider:
    def __init__(self, store: CertificateStore, clock) -> None:
        self.store = store
        self.clock = clock
        self._cache: dict[tuple, tuple[ServerTLS, StoredCertificate]] = {}

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)

    def reload(self) -> None:
        self.store.load()
        self._cache.clear()
        for problem in self.store.problems:
            log.error("certificate store: {problem}", problem=problem)

    def certificate_for(self, connector) -> StoredCertificate:
        return self.store.select(connector.tls_certificate_name or None, connector.fqdn, self.now())

    def options_for(self, connector) -> tuple[ServerTLS, StoredCertificate]:
        """TLS options for the connector; CertificateError if none can be had."""
        profile = profile_for(connector)
        key = (connector.tls_certificate_name, connector.fqdn, profile)
        cached = self._cache.get(key)
        if cached is None:
            cert = self.certificate_for(connector)
            try:
                cached = (ServerTLS(cert, self.clock, profile), cert)
            except Exception as e:  # a key OpenSSL refuses: say which file
                raise CertificateError(f"{cert.path}: cannot be used for TLS: {e}") from None
            self._cache[key] = cached
        return cached
