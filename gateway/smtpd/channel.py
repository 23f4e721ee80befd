"""
What the parts of a session that answer commands (commands.py, body.py,
authentication.py, starttls.py) may ask of the part that owns the wire
(protocol.py, ESMTPServer): write a reply, answer a command's result in
order, end the transaction or the connection.

They never write to the transport themselves, so replies keep the order of
the commands and every refusal, typed or not, becomes its reply in one
place (ESMTPServer.answer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from gateway.errors import SMTPReply


class Channel(Protocol):
    """The session's framing, as its command handlers see it."""

    # The connection is closed (or closing): late results are dropped.
    closed: bool
    # NOOP, RSET, VRFY, HELP and unknown commands since the last message.
    junk_commands: int

    def send(self, reply: SMTPReply) -> None:
        """Write a reply now (after the ones before it), no tarpit."""

    def answer(self, result: Any) -> None:
        """A command's result: a reply, None, or a Deferred of one; later commands wait for it."""

    def answer_now(self, reply: SMTPReply | None, details: dict | None = None) -> Deferred | None:
        """Send a reply, after the tarpit if it is an error to an anonymous client (the Deferred then)."""

    def fail(self, failure: Failure) -> None:
        """An exception where a reply was due: SMTPError's reply, else 451 and the traceback in the log."""

    def run(self, method: Callable[..., Any], *args: Any) -> None:
        """Call a command's handler and answer what it returns or raises."""

    def close(self) -> None:
        """Send what is written and close the connection."""

    def drop_transaction(self) -> None:
        """Abort the mail transaction in progress, if any, and forget its body."""

    def discard_input(self) -> int:
        """Throw away the input not yet read (STARTTLS); how many bytes that was."""

    def start_tls(self, options: Any) -> None:
        """Send what is written, then start the TLS handshake."""
