"""
The mail transaction in progress: begun by MAIL, grown by RCPT
(commands.py), ended by the message body (body.py) or dropped (RSET,
HELO, STARTTLS, a refusal, the connection's end).
"""

from __future__ import annotations

from gateway.smtpd.session import Transaction


class MailState:
    """The tier's Transaction between MAIL and its final reply, and what the session counts about it."""

    __slots__ = ("transaction", "recipients", "smtputf8")

    def __init__(self) -> None:
        self.transaction: Transaction | None = None
        # Recipients accepted so far (RCPT answered positively).
        self.recipients = 0
        # The MAIL carried SMTPUTF8: its RCPTs may be UTF-8.
        self.smtputf8 = False

    def begin(self, transaction: Transaction, smtputf8: bool) -> None:
        self.transaction = transaction
        self.smtputf8 = smtputf8
        self.recipients = 0

    def end(self) -> Transaction | None:
        """The body is complete: the transaction, now out of the session's hands (finish() is the caller's)."""
        transaction, self.transaction = self.transaction, None
        self.recipients = 0
        return transaction

    def drop(self) -> None:
        """Abort the transaction, if any: nothing of it may be delivered."""
        transaction = self.end()
        if transaction is not None:
            transaction.abort()
