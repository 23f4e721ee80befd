"""
The message body of a session: DATA and BDAT (RFC 3030 CHUNKING), from the
command to the final reply.

Content has no line limit: DATA is decoded in bulk by DataDecoder, BDAT
chunks pass through LineEndings (gateway/smtpd/data.py). Body bytes go to
the tier's Transaction as they arrive, never held whole; past the
connector's MaxMessageSize they are counted and dropped, and the message is
refused at its end. On frontends the header is scanned as it streams
(MaxHeaderSize, hop count, From: for check_header_from). The checks at the
end of the data choose one refusal, or hand the message to the tier.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config import ReceiveConnector
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.headers import HeaderScan
from gateway.policy.headerfrom import header_from_refusal
from gateway.policy.rights import Right
from gateway.smtpd.channel import Channel
from gateway.smtpd.data import DataDecoder, LineEndings
from gateway.smtpd.mailstate import MailState
from gateway.smtpd.observer import NullObserver
from gateway.smtpd.session import Session

log = Logger(namespace="exgateway.smtpd")


def bare_line_end_reply(check: LineEndings) -> SMTPReply:
    """The 554 5.6.0 that names what the message held: bare LF, bare CR, or both."""
    if check.bare_lf and check.bare_cr:
        return Reply.BARE_LINE_ENDS
    return Reply.BARE_LINEFEED if check.bare_lf else Reply.BARE_CR


class MessageBody:
    """DATA and BDAT for one session; the framing feeds it the input while `receiving`."""

    __slots__ = (
        "channel", "session", "connector", "mail", "observer", "auth", "_decoder", "_check", "_size", "_overflow", "_headers",
        "_header_from", "_hops", "_bdat_left", "_bdat_size", "_bdat_last", "_bdat_refusal",
    )

    def __init__(
        self, channel: Channel, session: Session, connector: ReceiveConnector, mail: MailState, observer: NullObserver,
        auth: Any = None,
    ) -> None:
        self.channel = channel
        self.session = session
        self.connector = connector
        self.mail = mail
        self.observer = observer
        # AuthService, for [authentication] check_header_from; None where the tier has none.
        self.auth = auth
        # DATA in progress: its decoder. The body in progress (DATA or BDAT): its line-end check.
        self._decoder: DataDecoder | None = None
        self._check: LineEndings | None = None
        self._size = 0
        self._overflow = False
        self._headers: HeaderScan | None = None
        # What the header scan of the current message found (frontends): From: and the hop count.
        self._header_from: bytes | None = None
        self._hops = 0
        # BDAT: octets of the current chunk still to read (None outside a chunk), its size, LAST, and its refusal.
        self._bdat_left: int | None = None
        self._bdat_size = 0
        self._bdat_last = False
        self._bdat_refusal: SMTPReply | None = None

    @property
    def in_data(self) -> bool:
        """DATA content is coming: the input is body up to the lone dot."""
        return self._decoder is not None

    @property
    def in_chunk(self) -> bool:
        """A BDAT chunk is coming: the next octets are body, whatever they hold."""
        return self._bdat_left is not None

    @property
    def in_message(self) -> bool:
        """A body has begun and not ended: DATA, or BDAT with its LAST chunk still to come (between chunks too)."""
        return self._check is not None

    @property
    def chunk_due(self) -> bool:
        """Every octet of the chunk is read (at once for BDAT 0): it is answered without more input."""
        return self._bdat_left == 0

    def reset(self) -> None:
        """The transaction is dropped: its body, if one was coming, is forgotten."""
        self._decoder = None
        self._check = None
        self._header_from = None

    # --- DATA ---------------------------------------------------------------

    def do_DATA(self, arg: str) -> Any:
        if self.mail.transaction is None:
            raise SMTPError(Reply.NEED_MAIL)
        if self.mail.recipients == 0:
            raise SMTPError(Reply.NEED_RCPT)
        if arg.strip():
            raise SMTPError(Reply.BAD_SYNTAX, reason="DATA takes no argument")
        if self._check is not None:
            raise SMTPError(Reply.DATA_AFTER_BDAT)
        opened = self.mail.transaction.open_body()
        if isinstance(opened, Deferred):
            return opened.addCallback(lambda _: self._start_data())
        return self._start_data()

    def _start_data(self) -> SMTPReply:
        self._decoder = DataDecoder()
        self._start_body(self._decoder.check)
        return Reply.START_DATA

    def take_data(self, data: bytes) -> bytes | None:
        """DATA content; once the lone dot is in `data`, what follows it (the framing then calls end_of_message)."""
        assert self._decoder is not None
        content, rest = self._decoder.feed(data)
        if content:
            self._take(content)
        if rest is not None:
            self._decoder = None
        return rest

    # --- BDAT ---------------------------------------------------------------

    def do_BDAT(self, arg: str) -> Any:
        """RFC 3030 CHUNKING: the chunk's octets are read whatever the verdict, then answered."""
        if not self.connector.chunking_enabled:
            raise SMTPError(Reply.UNRECOGNIZED, reason="CHUNKING disabled on this connector")
        words = arg.split()
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or (len(words) == 2 and words[1].upper() != "LAST"):
            raise SMTPError(Reply.BAD_SYNTAX, reason="BDAT <size> [LAST]")
        self._bdat_left = self._bdat_size = int(words[0])
        self._bdat_last = len(words) == 2
        refusal = None
        transaction = self.mail.transaction
        if transaction is None:
            refusal = Reply.NEED_MAIL
        elif self.mail.recipients == 0:
            refusal = Reply.NEED_RCPT
        if refusal is not None or transaction is None:
            self._bdat_refusal = refusal
            return None
        if self._check is not None:
            return None
        self._start_body(LineEndings())
        opened = transaction.open_body()
        if isinstance(opened, Deferred):
            return opened.addCallbacks(lambda _: None, self._bdat_open_failed)
        return None

    def _bdat_open_failed(self, failure: Failure) -> None:
        self.channel.drop_transaction()
        self._bdat_refusal = failure.value.reply if isinstance(failure.value, SMTPError) else Reply.LOCAL_ERROR

    def split_chunk(self, data: bytes) -> tuple[bytes, bytes]:
        """BDAT: exactly the announced octets are body, whatever they contain; (the chunk's part of `data`, the rest)."""
        left = self._bdat_left or 0
        chunk = data[:left]
        self._bdat_left = left - len(chunk)
        return chunk, data[left:]

    def take_chunk(self, chunk: bytes) -> None:
        if self._bdat_refusal is None and chunk and self._check is not None:
            self._take(self._check.feed(chunk))

    def end_chunk(self) -> None:
        """The chunk is read: its refusal, the end of the message (LAST), or 250 for the octets."""
        self._bdat_left = None
        if self._bdat_refusal is not None:
            refusal, self._bdat_refusal = self._bdat_refusal, None
            self.channel.answer(refusal)
        elif self._bdat_last:
            if self._check is not None:
                self._take(self._check.end())
            self.end_of_message()
        else:
            self.channel.answer_now(SMTPReply(250, "2.0.0", f"{self._bdat_size} octets received"))

    # --- both -----------------------------------------------------------------

    def _start_body(self, check: LineEndings) -> None:
        self._check = check
        self._size = 0
        self._overflow = False
        # Nothing of the previous message's header may be judged with this one.
        self._header_from = None
        self._hops = 0
        # Frontends check MaxHeaderSize here; a hub's intake scans headers anyway and checks it there.
        self._headers = HeaderScan(self.connector.max_header_size, keep=False) if self.connector.role == "frontend" else None

    def _take(self, content: bytes) -> None:
        """Body bytes for the transaction, unless the message is already over size."""
        if not content:
            return
        headers = self._headers
        if headers is not None and not headers.done:
            headers.feed(content)
            if headers.done:
                self._headers_scanned(headers)
        self._size += len(content)
        if self._overflow:
            return
        if self._size > self.connector.max_message_size and Right.BYPASS_MESSAGE_SIZE_LIMIT not in self.session.rights:
            self._overflow = True
            return
        if self.mail.transaction is not None:
            self.mail.transaction.write(content)

    def _headers_scanned(self, headers: HeaderScan) -> None:
        self._header_from = headers.from_value
        self._hops = headers.received
        self._headers = None if not headers.too_large else headers

    def _refusal(self, check: LineEndings) -> SMTPReply | None:
        """What the end of the data refuses the message for, if anything: the first that applies."""
        if check.bare_newline and self.connector.bare_linefeeds == "reject":
            return bare_line_end_reply(check)
        if self._overflow:
            return Reply.SIZE_EXCEEDED
        if self._headers is not None and self._headers.too_large:
            return Reply.HEADER_TOO_LARGE
        if self._hops > self.connector.max_hop_count:
            return Reply.HOP_COUNT_EXCEEDED
        return header_from_refusal(self.session, self.auth, self.mail.transaction, self._header_from)

    def end_of_message(self) -> None:
        check = self._check
        self._check = None
        if self._headers is not None and not self._headers.done:
            # A message that is all header (no blank line, no body): its header ends here.
            self._headers.finish()
            self._headers_scanned(self._headers)
        assert check is not None
        refusal = self._refusal(check)
        if refusal is not None:
            self.channel.drop_transaction()
            self.channel.answer(refusal)
            return
        session = self.session
        if check.bare_newline:
            log.info("bare line ends turned into CRLF in a message from {client_ip} ({session_id}): LF {bare_lf}, CR {bare_cr}",
                     client_ip=session.client_ip, session_id=session.session_id, bare_lf=check.bare_lf, bare_cr=check.bare_cr)
        transaction = self.mail.end()
        session.xforward = {}
        self.channel.junk_commands = 0
        assert transaction is not None
        try:
            result = transaction.finish()
        except Exception:
            self.channel.fail(Failure())
            return
        if isinstance(result, Deferred):
            result.addCallback(self._count_accepted)
        self.channel.answer(result)

    def _count_accepted(self, reply: Any) -> Any:
        if isinstance(reply, SMTPReply) and reply.code == 250:
            self.observer.accepted()
        return reply
