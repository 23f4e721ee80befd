"""
Exchange's header firewall: a client without the right to set the
organisation's own headers cannot smuggle them in.

Exchange removes `X-MS-Exchange-Organization-*` (and `X-MS-Exchange-Forest-*`)
header fields from messages submitted by sessions that lack
ms-Exch-Accept-Headers-Organization (-Forest): those fields steer transport
and mailbox processing (spam verdicts, authentication results, "already
scanned") and only the organisation's own servers may set them. exgateway
does the same, and treats its own `X-Exgateway-*` fields (written into the
notices it generates) as organisation headers.

The filter sits between the session and the tier's transaction, so it
applies wherever a message enters the gateway: a frontend session (whose
client is never a gateway node) strips before the hub sees the message; a
hub session from another gateway node (ExchangeServers: every right) passes
the message as is. It streams: only the header field being read is held
(bounded by the connector's header size limit, past which the message is
refused anyway), every other byte passes on at once, unchanged.
"""

from __future__ import annotations

from twisted.logger import Logger

from gateway.fieldfilter import FieldFilter
from gateway.headerfields import header_end
from gateway.policy.rights import Right

log = Logger(namespace="exgateway.headerfirewall")

ORGANIZATION_PREFIXES = (b"x-ms-exchange-organization-", b"x-exgateway-")
FOREST_PREFIXES = (b"x-ms-exchange-forest-",)


def forbidden_prefixes(rights: frozenset[Right]) -> tuple[bytes, ...]:
    """The header-name prefixes this session may not set (lower case)."""
    prefixes: tuple[bytes, ...] = ()
    if Right.ACCEPT_ORGANIZATION_HEADERS not in rights:
        prefixes += ORGANIZATION_PREFIXES
    if Right.ACCEPT_FOREST_HEADERS not in rights:
        prefixes += FOREST_PREFIXES
    return prefixes


def firewalled(transaction, rights: frozenset[Right], max_header_size: int, session_id: str = ""):
    """The transaction itself for a session that may set every header; otherwise it behind a HeaderFirewall."""
    prefixes = forbidden_prefixes(rights)
    if not prefixes:
        return transaction
    return HeaderFirewall(transaction, prefixes, max_header_size, session_id)


class HeaderFirewall(FieldFilter):
    """A Transaction that passes the body on without the header fields whose names start with `prefixes`."""

    def __init__(self, transaction, prefixes: tuple[bytes, ...], max_header_size: int, session_id: str = "") -> None:
        super().__init__(transaction, max_header_size)
        self.prefixes = prefixes
        self.session_id = session_id
        self.stripped: list[str] = []
        self._drop = False        # whether the field being read is dropped

    def finish(self):
        if not self._done:
            # A message that is all header: its last field ends with the message.
            if self._partial:
                # Its last line, without a line end: a field (or continuation) is filtered like any other, anything else is body.
                self._line(self._partial)
            self._end_field()
            self._partial = b""
            self._done = True
        if self.stripped:
            log.info("header firewall {session_id}: removed {fields}", session_id=self.session_id, fields=", ".join(self.stripped))
        return self.transaction.finish()

    def _start_field(self, name: bytes) -> None:
        self._drop = name.startswith(self.prefixes)

    def _end_header(self, line: bytes) -> None:
        # The blank line (or the first body line of a message without one): the header ends here,
        # for every later reader too (header_end), so nothing after it is a field left unfiltered.
        # A message whose first line is no field has no header: the intake writes the blank line after its own.
        self._done = True
        first = self._seen == len(line)
        self._pass(line if first else header_end(line) + line)

    def _end_field(self) -> None:
        field, self._field = self._field, b""
        if not field:
            return
        if self._drop:
            self.stripped.append(field.split(b":", 1)[0].rstrip(b" \t").decode("ascii", "replace"))
        else:
            self.transaction.write(field)
