"""
ldaptor's LDAP client, with a StartTLS that a man in the middle cannot
answer for the server.

ldaptor's own `startTLS` starts TLS when the StartTLS response arrives but
keeps decoding the rest of the read it came in: replies a man in the middle
put behind the response (a bind, a search result, the user's bind) are then
taken as the server's, in clear, before any handshake, and a wrong password
authenticated. Its `startTLS` also fires before the handshake and schedules
itself on the global reactor.

`SecureLDAPClient` wraps only that step: `start_tls` refuses the connection
if any byte follows the StartTLS response in the buffer (RFC 4513 §3.1.1:
nothing may be sent between the response and the TLS negotiation), and
fires only once the handshake has completed, which with the options of
`optionsForClientTLS` means the server's certificate chains to the trust
root and names the host. `secure()` waits for the same on an ldaps://
connection. Everything else (bind, search, decoding) is ldaptor's.
"""

from __future__ import annotations

from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import ldaperrors
from ldaptor.protocols.ldap.ldapclient import LDAPClient
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer

from gateway.auth.identity import DirectoryUnavailable

log = Logger(namespace="exgateway.auth.ldap")


class StartTLSRefused(DirectoryUnavailable):
    """StartTLS did not give a clean TLS session (refused, garbled, or data injected before the handshake)."""


@implementer(IHandshakeListener)
class SecureLDAPClient(LDAPClient):
    # LDAPClient's receive buffer (ldaptor declares no types).
    buffer: bytes

    def __init__(self) -> None:
        super().__init__()
        self._secure = False
        self._waiting: list[Deferred] = []
        # After a refused StartTLS nothing more is decoded: the connection is being aborted.
        self._refused = False

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().dataReceived(data)

    def secure(self) -> Deferred:
        """Fires with this client once a TLS handshake on the connection has completed (the certificate checked)."""
        if self._secure:
            return succeed(self)
        if not self.connected:
            return fail(StartTLSRefused("connection to the directory lost before the TLS handshake"))
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

    def start_tls(self, options) -> Deferred:
        """StartTLS (RFC 4511 §4.14): fires with this client once TLS is up and verified, never earlier."""
        if self.onwire:
            return fail(StartTLSRefused("StartTLS while other LDAP operations are on the wire"))
        d = self.send(pureldap.LDAPStartTLSRequest())
        d.addCallback(self._tls_response, options)
        return d

    def _tls_response(self, response, options) -> Deferred:
        if not isinstance(response, pureldap.LDAPExtendedResponse):
            raise StartTLSRefused(f"the directory answered StartTLS with {type(response).__name__}")
        if response.resultCode != ldaperrors.Success.resultCode:
            raise StartTLSRefused(f"the directory refused StartTLS: {ldaperrors.get(response.resultCode, response.errorMessage)}")
        if response.responseName is not None and response.responseName != pureldap.LDAPStartTLSResponse.oid:
            raise StartTLSRefused(f"StartTLS answered with responseName {response.responseName!r}")
        if self.buffer:
            # Read in clear behind the response: nobody but a man in the middle
            # sends that, and none of it may be taken as the server's reply.
            count, self.buffer = len(self.buffer), b""
            self._refused = True
            log.warn("LDAP StartTLS refused: {count} bytes came after the StartTLS response, before the handshake", count=count)
            self.transport.abortConnection()
            raise StartTLSRefused(f"{count} bytes came after the StartTLS response, before the TLS handshake")
        self.transport.startTLS(options)
        return self.secure()

    def handshakeCompleted(self) -> None:
        self._secure = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self)

    def connectionLost(self, reason=None) -> None:
        super().connectionLost(reason)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(StartTLSRefused(f"TLS with the directory failed: {reason.getErrorMessage() if reason else 'connection lost'}"))
