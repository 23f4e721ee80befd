"""
`[authentication] header_from = "authenticated_user"`: a From: header the
authenticated user may not send as is replaced with the user's own address,
instead of the message being refused (550 5.7.60), for applications that
write a fixed From: they cannot be told to change (a scanner's
"scanner@localhost", an app's "noreply@vendor.example").

It applies where check_header_from would refuse: an authenticated session
without ms-Exch-SMTP-Accept-Any-Sender, on a message whose From: holds an
address outside the user's send-as patterns (or no address at all). The
user's address is its login name when that is an address it may send as,
else its first send-as address that is not a pattern, else the message's
MAIL FROM (which send-as has already allowed). The whole field is
replaced (a display name written for someone else is not kept); every other
byte passes on unchanged. Like the header firewall it streams: only the
header field being read is held.
"""

from __future__ import annotations

from email.utils import getaddresses

from twisted.logger import Logger

from gateway.errors import Reply, SMTPReply
from gateway.fieldfilter import FieldFilter
from gateway.headerfields import FIELD, header_end
from gateway.policy.rights import Right

log = Logger(namespace="exgateway.headerfrom")

REPLACE = "authenticated_user"


def user_address(identity, sender: str) -> str | None:
    """The address a From: is set to for this user, or None if it has none to give."""
    send_as = identity.send_as
    if "@" in identity.name and send_as.allows(identity.name):
        return identity.name
    for pattern in send_as.patterns:
        if "*" not in pattern and "@" in pattern:
            return pattern
    return sender or None


def header_from_fixed(transaction, session, auth, sender: str, max_header_size: int):
    """The transaction behind a HeaderFromFixer where the config asks for it and the user has an address; else itself."""
    identity = session.identity
    if identity is None or auth is None or not auth.config.check_header_from or auth.config.header_from != REPLACE:
        return transaction
    if Right.ACCEPT_ANY_SENDER in session.rights:
        return transaction
    address = user_address(identity, sender)
    if address is None:
        return transaction
    return HeaderFromFixer(transaction, identity, address, max_header_size, session.session_id)


def header_from_refusal(session, auth, transaction, from_value: bytes | None) -> SMTPReply | None:
    """
    `[authentication] check_header_from`: at the end of the data, the From:
    header (`from_value`, as the header scan found it) must hold only
    addresses the authenticated user may send as, or the message gets
    550 5.7.60. None where the check does not apply or passes: no AUTH, the
    user may send as anyone, or the From: is being replaced (HeaderFromFixer).
    """
    identity = session.identity
    if identity is None or auth is None or not auth.config.check_header_from:
        return None
    if isinstance(transaction, HeaderFromFixer):
        return None
    if Right.ACCEPT_ANY_SENDER in session.rights:
        return None
    value = (from_value or b"").decode("utf-8", "replace")
    addresses = [a for _, a in getaddresses([value]) if a]
    if addresses and all(identity.send_as.allows(a) for a in addresses):
        return None
    log.info("header From {value!r} is not an address {user} may send as", value=value.strip(), user=identity.name)
    return Reply.SEND_AS_DENIED


class HeaderFromFixer(FieldFilter):
    """A Transaction that passes the message on with each disallowed From: field replaced (and one added if there is none)."""

    def __init__(self, transaction, identity, address: str, max_header_size: int, session_id: str = "") -> None:
        super().__init__(transaction, max_header_size)
        self.identity = identity
        self.address = address
        self.session_id = session_id
        self.replaced: list[str] = []
        self._is_from = False
        self._seen_from = False

    def finish(self):
        if not self._done:
            self._end_field()
            m = FIELD.match(self._partial) if self._partial else None
            if m is not None:
                # A last field without its line end.
                self._field, self._partial = self._partial, b""
                self._start_field(m.group(1).lower())
                self._end_field()
            self._end_header(self._partial)
            self._partial = b""
        return self.transaction.finish()

    def _start_field(self, name: bytes) -> None:
        self._is_from = name == b"from"

    def _end_header(self, line: bytes) -> None:
        """The header ends at `line` (the blank line, a body line, or nothing): a message without From: gets one."""
        self._done = True
        # Before a body line (no blank line), one is added, so the line (and a From: after it) stays body;
        # at the end of a message that is all header, only when a From: is added.
        end = header_end(line) if line or not self._seen_from else b""
        if not self._seen_from:
            self.replaced.append("(none)")
            self._pass(b"From: " + self.address.encode() + b"\r\n")
            self._log()
        self._pass(end + line)

    def _end_field(self) -> None:
        field, self._field = self._field, b""
        if not field:
            return
        if self._is_from:
            self._seen_from = True
            value = field.split(b":", 1)[1].decode("utf-8", "replace")
            addresses = [a for _, a in getaddresses([value]) if a]
            if not addresses or not all(self.identity.send_as.allows(a) for a in addresses):
                self.replaced.append(" ".join(value.split()))
                self._log()
                field = b"From: " + self.address.encode() + b"\r\n"
        self.transaction.write(field)

    def _log(self) -> None:
        log.info(
            "header From {value!r} is not an address {user} may send as; set to {address} ({session_id})",
            value=self.replaced[-1], user=self.identity.name, address=self.address, session_id=self.session_id,
        )
