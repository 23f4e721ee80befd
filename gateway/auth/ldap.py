"""
LDAP / Active Directory credentials: find the user's entry, bind as it.

The login name is looked up by each of `login_attributes` (sAMAccountName,
userPrincipalName, uid, mail) in one OR filter built as BER objects, never
as filter text, so a name like `*)(uid=*` finds nothing instead of
everybody. Exactly one entry must match; then a bind as that entry's DN
with the password proves it. The sender addresses come from the entry's
`mail` and `proxyAddresses` (its `smtp:` ones).

An empty password is refused before LDAP sees it: many directories, Active
Directory among them, treat a bind with a DN and no password as an
anonymous bind that *succeeds*. A directory that is down, refuses the
service account or does not answer within the timeout is a temporary
failure (DirectoryUnavailable, 454 4.7.0), never a 535.

The connection is ldaptor's client wrapped by SecureLDAPClient
(ldapclient.py): with StartTLS, anything a man in the middle puts behind
the StartTLS response refuses the connection (454), and no bind is sent
before the TLS handshake has completed and the certificate was checked; the
same wait holds on ldaps://.
"""

from __future__ import annotations

from pathlib import Path

from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import ldaperrors
from ldaptor.protocols.ldap.ldapsyntax import LDAPEntry
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.logger import Logger
from zope.interface import implementer

from gateway.auth.identity import DirectoryUnavailable, Identity, WrongPassword, text_credentials
from gateway.auth.ldapclient import SecureLDAPClient
from gateway.auth.sendas import SenderPatterns, parse_pattern
from gateway.config import LDAPConfig

log = Logger(namespace="exgateway.auth.ldap")


def login_filter(attributes: tuple[str, ...], name: str):
    """(|(attr1=name)(attr2=name)...) as objects: the name is a value, never filter syntax."""
    return pureldap.LDAPFilter_or([
        pureldap.LDAPFilter_equalityMatch(
            attributeDesc=pureldap.LDAPAttributeDescription(value=attr),
            assertionValue=pureldap.LDAPAssertionValue(value=name),
        )
        for attr in attributes
    ])


def sender_addresses(values: list[str]) -> SenderPatterns:
    """`mail` values and `proxyAddresses` of type SMTP; X500:, SIP: and the like are not senders."""
    patterns = []
    for value in values:
        kind, colon, _ = value.partition(":")
        if colon and kind.lower() != "smtp":
            continue
        try:
            patterns.append(parse_pattern(value))
        except ValueError:
            log.warn("ignoring directory sender value {value!r}", value=value)
    return SenderPatterns(tuple(dict.fromkeys(patterns)))


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@implementer(ICredentialsChecker)
class LDAPChecker:
    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, config: LDAPConfig, reactor) -> None:
        self.config = config
        self.reactor = reactor

    def _endpoint(self):
        host, port, ldaps = self.config.host_port
        endpoint: IStreamClientEndpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.config.timeout)
        if ldaps:
            endpoint = wrapClientTLS(self._tls_options(), endpoint)
        return endpoint

    def _tls_options(self):
        host = self.config.host_port[0]
        ca = self.config.ca_file
        trust = Certificate.loadPEM(Path(ca).read_bytes()) if ca else platformTrust()
        return optionsForClientTLS(host, trustRoot=trust)

    def requestAvatarId(self, credentials):
        try:
            name, password = text_credentials(credentials)
        except UnauthorizedLogin:
            return defer.fail()
        d = defer.ensureDeferred(self._login(name, password))
        d.addTimeout(self.config.timeout, self.reactor)
        d.addErrback(self._classify)
        return d

    async def _connect(self) -> SecureLDAPClient:
        """A connection to the directory, secured and bound as the service account (if any); the caller closes it."""
        client = await connectProtocol(self._endpoint(), SecureLDAPClient())
        try:
            if self.config.start_tls:
                await client.start_tls(self._tls_options())
            elif self.config.host_port[2]:
                await client.secure()
            if self.config.bind_dn:
                try:
                    await client.bind(self.config.bind_dn, self.config.bind_password)
                except ldaperrors.LDAPInvalidCredentials:
                    raise DirectoryUnavailable("the directory refused bind_dn / bind_password") from None
        except BaseException:
            _close(client)
            raise
        return client

    async def _login(self, name: str, password: str) -> Identity:
        client = await self._connect()
        try:
            base = LDAPEntry(client, self.config.base_dn)
            entries = await base.search(
                filterObject=login_filter(self.config.login_attributes, name),
                attributes=list(self.config.sender_attributes),
                sizeLimit=2,
                sizeLimitIsNonFatal=True,
            )
            if len(entries) != 1:
                raise UnauthorizedLogin("no such user" if not entries else "the name matches several directory entries")
            entry = entries[0]
            # The entry, not the name that found it, is the account lockouts count.
            account = "ldap:" + entry.dn.getText().lower()
            try:
                await client.bind(entry.dn.getText(), password)
            except ldaperrors.LDAPInvalidCredentials:
                raise WrongPassword(account) from None
            values = [_text(v) for attr in self.config.sender_attributes for v in entry.get(attr, ())]
            return Identity(name, sender_addresses(values), (), "ldap", account)
        finally:
            _close(client)

    @staticmethod
    def _classify(failure):
        if failure.check(UnauthorizedLogin, DirectoryUnavailable):
            return failure
        if failure.check(ldaperrors.LDAPInvalidCredentials):
            raise UnauthorizedLogin("wrong password")
        if failure.check(defer.TimeoutError, defer.CancelledError):
            raise DirectoryUnavailable("the directory did not answer in time")
        raise DirectoryUnavailable(f"directory error: {failure.getErrorMessage() or failure.type.__name__}")


def _close(client) -> None:
    if client.transport is not None:
        client.transport.loseConnection()


def address_filter(address: str):
    """(|(mail=address)(proxyAddresses=smtp:address)) as objects; proxyAddresses matching is case-blind (SMTP: or smtp:)."""
    return pureldap.LDAPFilter_or([
        pureldap.LDAPFilter_equalityMatch(
            attributeDesc=pureldap.LDAPAttributeDescription(value=attr),
            assertionValue=pureldap.LDAPAssertionValue(value=value),
        )
        for attr, value in (("mail", address), ("proxyAddresses", "smtp:" + address))
    ])


class LDAPRecipients:
    """
    The directory as a recipient source (gateway/policy/recipients.py): does
    an entry carry this address in `mail` or an smtp: `proxyAddresses`? Over
    the same connection set-up as AUTH (TLS, service account); down or slow
    is DirectoryUnavailable, never "unknown".
    """

    name = "ldap"
    asynchronous = True

    def __init__(self, config: LDAPConfig, reactor) -> None:
        self.checker = LDAPChecker(config, reactor)

    def knows(self, address: str):
        d = defer.ensureDeferred(self._search(address))
        d.addTimeout(self.checker.config.timeout, self.checker.reactor)
        d.addErrback(self._classify)
        return d

    async def _search(self, address: str) -> bool:
        client = await self.checker._connect()
        try:
            entries = await LDAPEntry(client, self.checker.config.base_dn).search(
                filterObject=address_filter(address), attributes=["1.1"], sizeLimit=1, sizeLimitIsNonFatal=True,
            )
            return bool(entries)
        finally:
            _close(client)

    @staticmethod
    def _classify(failure):
        if failure.check(DirectoryUnavailable):
            return failure
        if failure.check(defer.TimeoutError, defer.CancelledError):
            raise DirectoryUnavailable("the directory did not answer in time")
        raise DirectoryUnavailable(f"directory error: {failure.getErrorMessage() or failure.type.__name__}")
