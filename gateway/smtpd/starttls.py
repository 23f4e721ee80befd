"""
TLS in a session: STARTTLS (RFC 3207) and implicit TLS (port 465, RFC 8314).

At STARTTLS every byte already buffered behind the command is thrown away
before the handshake, so nothing a man in the middle pipelined in clear text
runs inside the TLS session (CVE-2011-0411); the session forgets HELO,
transaction, XFORWARD and any AUTH won in clear, and STARTTLS is not offered
again.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from gateway.config import ReceiveConnector
from gateway.errors import Reply, SMTPError
from gateway.policy.rights import Principal, connector_rights
from gateway.smtpd.channel import Channel
from gateway.smtpd.observer import NullObserver
from gateway.smtpd.session import Session, TLSInfo
from gateway.tls.store import CertificateError

log = Logger(namespace="exgateway.smtpd")


def principal_for(connector: ReceiveConnector) -> Principal:
    """Without AUTH, a client is anonymous unless the connector is externally secured."""
    if "ExternalAuthoritative" in connector.auth_mechanisms:
        return Principal.EXTERNALLY_SECURED
    return Principal.ANONYMOUS


def forget_session_state(session: Session, connector: ReceiveConnector) -> None:
    """
    RFC 3207 4.2: after STARTTLS the client starts over. Whatever it won
    in clear text (HELO, XFORWARD, an AUTH identity and the rights that
    came with it) could have been a man in the middle's doing; only the
    penalties it earned (failure and error counts) are kept.
    """
    session.helo = None
    session.esmtp = False
    session.xforward = {}
    session.identity = None
    session.auth_mechanism = ""
    session.node = ""
    session.principal = principal_for(connector)
    session.rights = connector_rights(connector, session.principal)


class StartTLS:
    """The TLS of one session: offered, started, and what its handshake agreed."""

    __slots__ = ("channel", "session", "connector", "observer", "tls", "started", "_cert")

    def __init__(
        self, channel: Channel, session: Session, connector: ReceiveConnector, observer: NullObserver, tls: Any = None,
    ) -> None:
        self.channel = channel
        self.session = session
        self.connector = connector
        self.observer = observer
        # TLSProvider (certificates per connector); None where a tier has none.
        self.tls = tls
        self.started = False
        self._cert: Any = None

    def offered(self) -> bool:
        """STARTTLS is in EHLO and HELP: the connector offers it, it can be had, and it has not been used."""
        return self.connector.offers_starttls and not self.started and self.tls is not None

    def _options(self) -> Any:
        if self.tls is None:
            raise CertificateError("no certificate store on this tier")
        try:
            return self.tls.options_for(self.connector)
        except CertificateError as e:
            log.error("no TLS for {connector}: {error}", connector=self.connector.identity, error=str(e))
            raise

    def _start(self, options: Any, cert: Any) -> None:
        self.started = True
        self._cert = cert
        # The 220 that answers STARTTLS leaves in clear text, before the handshake.
        self.channel.start_tls(options)

    def implicit(self) -> bool:
        """Port 465 (RFC 8314): TLS from the first byte; the banner goes out inside it. False: closed, no certificate."""
        try:
            options, cert = self._options()
        except CertificateError:
            self.channel.close()
            return False
        self._start(options, cert)
        return True

    def do_STARTTLS(self, arg: str) -> None:
        if self.started:
            raise SMTPError(Reply.TLS_ALREADY)
        if not self.connector.offers_starttls or self.tls is None:
            raise SMTPError(Reply.UNRECOGNIZED, reason="STARTTLS not offered on this connector")
        if arg.strip():
            raise SMTPError(Reply.BAD_SYNTAX, reason="STARTTLS takes no argument")
        if self.session.helo is None:
            raise SMTPError(Reply.NEED_HELO)
        try:
            options, cert = self._options()
        except CertificateError as e:
            raise SMTPError(Reply.TLS_UNAVAILABLE, reason=str(e)) from None
        discarded = self.channel.discard_input()
        if discarded:
            # Pipelined behind STARTTLS in clear text: never executed (CVE-2011-0411 class).
            log.warn("discarded {count} bytes sent after STARTTLS before the handshake by {client_ip}",
                     count=discarded, client_ip=self.session.client_ip)
        self.channel.drop_transaction()
        forget_session_state(self.session, self.connector)
        self.channel.send(Reply.STARTTLS_READY)
        self._start(options, cert)

    def handshake_completed(self, connection: Any) -> None:
        """The handshake is done: what it agreed goes into the session (Received header, XFORWARD, logs)."""
        session = self.session
        # The file's RSA or ECDSA certificate, whichever the handshake chose.
        cert = self._cert.served(connection)
        session.tls = TLSInfo(connection.get_protocol_version_name(), connection.get_cipher_name(), cert.thumbprint)
        # The protocol log, or where there is none the process log (gateway/smtpd/observer.py).
        self.observer.tls_started(session, cert)
