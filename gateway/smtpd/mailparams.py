"""
MAIL FROM parameters that describe the submission rather than the delivery:
AUTH= (RFC 4954 section 5) and BODY= (RFC 6152, RFC 3030).

AUTH= names who originally submitted the message. Outlook, .NET,
sendmail and Postfix (`smtp_send_dummy_mail_auth`, which sends `AUTH=<>`)
send it, whether or not they authenticated; refusing it bounces their
mail. RFC 4954 lets a server that does not trust the client accept the
parameter and treat it as `<>`: here only another gateway node (an
ExchangeServers peer on an ExternalAuthoritative connector) is trusted to
assert a submitter. A device that authenticated as itself cannot claim to
have been submitted by someone else.

BODY=BINARYMIME needs BINARYMIME, which is not offered (a frontend would
have to pass binary content through every hop): 555, as for any parameter
of an extension not offered.
"""

from __future__ import annotations

from gateway.address import AddressSyntaxError, parse_mailbox
from gateway.errors import Reply, SMTPError
from gateway.policy.rights import PermissionGroup, Principal
from gateway.smtpd import xtext

NULL_AUTH = "<>"
BODY_TYPES = ("7BIT", "8BITMIME")


def trusts_auth_parameter(session) -> bool:
    """RFC 4954 5: only a peer trusted to relay on a submitter's behalf may name one."""
    trusted = (Principal.EXTERNALLY_SECURED, Principal.GATEWAY_NODE)
    return session.principal in trusted and PermissionGroup.EXCHANGE_SERVERS in session.connector.permission_groups


def auth_parameter(value: str | None, trusted: bool) -> str:
    """The submitter to record: the decoded mailbox from a trusted peer, `<>` from anyone else. 501 if malformed."""
    if not value:
        raise SMTPError(Reply.BAD_SYNTAX, reason="AUTH= without a value")
    try:
        decoded = xtext.decode(value)
    except ValueError:
        raise SMTPError(Reply.BAD_SYNTAX, reason=f"AUTH={value!r} is not xtext") from None
    if decoded == NULL_AUTH:
        return NULL_AUTH
    try:
        mailbox = parse_mailbox(decoded, sender=True)
    except AddressSyntaxError:
        raise SMTPError(Reply.BAD_SYNTAX, reason=f"AUTH={value!r} is not a mailbox") from None
    return str(mailbox) if trusted else NULL_AUTH


def body_parameter(value: str | None) -> str:
    """7BIT or 8BITMIME; BINARYMIME is not offered (555); anything else is a syntax error (501)."""
    kind = (value or "").upper()
    if kind in BODY_TYPES:
        return kind
    if kind == "BINARYMIME":
        raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter="BODY=BINARYMIME", reason="BINARYMIME is not offered")
    raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad BODY value {value!r}")
