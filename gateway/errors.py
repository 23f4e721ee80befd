"""
SMTP replies and the typed errors that carry them.

Every reply a client can see comes from the catalogue below, with Exchange's
texts where Exchange has one, so an admin's searches and scripts carry over.
Code that refuses something raises `SMTPError` with a catalogue entry and,
separately, private fields for the log; the protocol turns the error into a
reply in one place. The public text never carries internal detail.
"""

from __future__ import annotations

from dataclasses import dataclass


class _once:
    """
    functools.cached_property without its lock (Python 3.11 takes one at
    every first access, and every reply built for one session, a banner or a
    queued 250, has a first access). The value goes in the instance's
    dictionary, which shadows this descriptor from then on.
    """

    def __init__(self, compute) -> None:
        self.compute = compute
        self.name = compute.__name__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@dataclass(frozen=True)
class SMTPReply:
    """One SMTP reply: basic code, enhanced status code and public text."""

    code: int
    enhanced: str
    text: str

    def lines(self) -> tuple[str, ...]:
        """The reply as wire lines without CRLF, one per text line."""
        return self._lines

    def encode(self) -> bytes:
        return self._wire

    # Worked out once per reply, on first use: most replies are catalogue
    # constants sent over and over; a reply parsed from a next hop is often
    # never formatted at all.
    @_once
    def _lines(self) -> tuple[str, ...]:
        texts = self.text.split("\n")
        prefix = f"{self.enhanced} " if self.enhanced else ""
        return tuple(f"{self.code}{' ' if i == len(texts) - 1 else '-'}{prefix}{t}" for i, t in enumerate(texts))

    @_once
    def _wire(self) -> bytes:
        return "".join(line + "\r\n" for line in self._lines).encode("utf-8")

    def without_enhanced(self) -> SMTPReply:
        """The reply for a client that was not offered ENHANCEDSTATUSCODES."""
        return SMTPReply(self.code, "", self.text)

    def format(self, **values: object) -> SMTPReply:
        """The same reply with `{name}` placeholders in the text filled in."""
        return SMTPReply(self.code, self.enhanced, self.text.format(**values))

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return " / ".join(self.lines())


class SMTPError(Exception):
    """A refusal: the reply the client gets, plus private fields for the log."""

    def __init__(self, reply: SMTPReply, **log_fields: object) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.log_fields = log_fields


def out_of_step(reply: SMTPReply, command: str) -> SMTPError:
    """
    The error a hub's reply becomes where it is not the one `command` awaits
    (250 to MAIL or a BDAT chunk, 354 to DATA, a 2xx or 5xx at the end of
    data). A 4xx or 5xx is the hub's refusal, passed on to the client (a 4xx
    marks that hub down: hub_down). Anything else, a 2xx or 3xx out of
    place, is a hub out of step, and the client gets a 451, never that reply:
    a 2xx would tell it a message was accepted that no hub has committed.
    """
    if reply.code >= 400:
        return SMTPError(reply, reason=f"hub refused {command}: {reply}", hub_down=reply.transient)
    return SMTPError(Reply.HUB_UNAVAILABLE, reason=f"hub answered {reply} to {command}", hub_down=True)


class Reply:
    """The catalogue. Names say when the reply is used."""

    # Greeting and session
    BANNER_DEFAULT = "{fqdn} exgateway ESMTP MAIL Service ready at {date}"
    BYE = SMTPReply(221, "2.0.0", "Service closing transmission channel")
    OK = SMTPReply(250, "2.0.0", "OK")
    RESET = SMTPReply(250, "2.0.0", "Resetting")
    VRFY = SMTPReply(252, "2.1.5", "Cannot VRFY user, but will accept message for delivery")
    HELP = SMTPReply(214, "2.0.0", "Commands: {commands}\nEnd of HELP info")
    SENDER_OK = SMTPReply(250, "2.1.0", "Sender OK")
    RECIPIENT_OK = SMTPReply(250, "2.1.5", "Recipient OK")
    START_DATA = SMTPReply(354, "", "Start mail input; end with <CRLF>.<CRLF>")
    QUEUED = SMTPReply(250, "2.6.0", "{message_id} [InternalId={internal_id}, Hostname={hostname}] Queued mail for delivery")
    XFORWARD_OK = SMTPReply(250, "2.0.0", "Ok")

    # Sequencing and syntax
    NEED_HELO = SMTPReply(503, "5.5.2", "Send hello first")
    NEED_MAIL = SMTPReply(503, "5.5.2", "Need mail command")
    SENDER_ALREADY = SMTPReply(503, "5.5.1", "Sender already specified")
    NEED_RCPT = SMTPReply(503, "5.5.2", "Need rcpt command")
    DATA_AFTER_BDAT = SMTPReply(503, "5.5.1", "Bad sequence of commands: DATA after BDAT")
    UNRECOGNIZED = SMTPReply(500, "5.3.3", "Unrecognized command")
    LINE_TOO_LONG = SMTPReply(500, "5.5.2", "Line too long")
    BAD_SYNTAX = SMTPReply(501, "5.5.4", "Invalid arguments")
    BAD_HELO = SMTPReply(501, "5.5.4", "Invalid domain name")
    BAD_ADDRESS = SMTPReply(501, "5.1.3", "Invalid address")
    BAD_SENDER = SMTPReply(501, "5.1.7", "Invalid address")
    UNKNOWN_PARAMETER = SMTPReply(555, "5.5.4", "Unsupported parameter")
    XFORWARD_IN_TRANSACTION = SMTPReply(503, "5.5.1", "XFORWARD not permitted inside a mail transaction")

    # Policy
    NOT_AUTHENTICATED = SMTPReply(530, "5.7.57", "SMTP; Client was not authenticated to send anonymous mail during MAIL FROM")
    CANNOT_SEND_AS = SMTPReply(550, "5.7.1", "Client does not have permissions to send as this sender")
    RELAY_DENIED = SMTPReply(550, "5.7.54", "SMTP; Unable to relay recipient in non-accepted domain")
    RECIPIENT_NOT_FOUND = SMTPReply(550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")
    RECIPIENT_LOOKUP_FAILED = SMTPReply(451, "4.4.3", "Directory lookup failed. Please try again later")
    NO_ROUTE = SMTPReply(550, "5.4.4", "SMTP; Unable to route recipient, no route to the recipient's domain")
    TOO_MANY_RECIPIENTS = SMTPReply(452, "4.5.3", "Too many recipients")
    SIZE_EXCEEDED = SMTPReply(552, "5.3.4", "Message size exceeds fixed maximum message size")
    HEADER_TOO_LARGE = SMTPReply(552, "5.3.4", "Header size exceeds fixed maximum size")
    HOP_COUNT_EXCEEDED = SMTPReply(554, "5.4.6", "Hop count exceeded - possible mail loop")
    BARE_LINEFEED = SMTPReply(554, "5.6.0", "Invalid message content, contains bare linefeeds")
    BARE_CR = SMTPReply(554, "5.6.0", "Invalid message content, contains bare carriage returns")
    BARE_LINE_ENDS = SMTPReply(554, "5.6.0", "Invalid message content, contains bare linefeeds and carriage returns")
    NO_CONNECTOR = SMTPReply(421, "4.3.2", "Service not available")
    DRAINING = SMTPReply(421, "4.3.2", "Service not active")
    # The process is stopping (SIGTERM, Ctrl-C): a message already in DATA finishes; every new command gets this.
    SHUTTING_DOWN = SMTPReply(421, "4.3.2", "Service not available, closing transmission channel")
    TOO_MANY_CONNECTIONS = SMTPReply(
        421, "4.3.2", "The maximum number of concurrent server connections has exceeded a limit, closing transmission channel"
    )
    TOO_MANY_CONNECTIONS_FROM_SOURCE = SMTPReply(
        421, "4.3.2", "The maximum number of concurrent connections has exceeded a limit, closing transmission channel"
    )
    RATE_LIMITED = SMTPReply(421, "4.4.2", "Message submission rate for this client has exceeded the configured limit")
    TIMEOUT = SMTPReply(451, "4.7.0", "Timeout waiting for client input")
    CONNECTION_TIMEOUT = SMTPReply(421, "4.4.1", "Connection timed out")
    TOO_MANY_ERRORS = SMTPReply(421, "4.7.0", "Too many errors on this connection, closing transmission channel")

    # TLS (RFC 3207)
    STARTTLS_READY = SMTPReply(220, "2.0.0", "SMTP server ready")
    TLS_ALREADY = SMTPReply(503, "5.5.2", "Only one STARTTLS command can be issued per session")
    TLS_REQUIRED = SMTPReply(530, "5.7.0", "Must issue a STARTTLS command first")
    TLS_UNAVAILABLE = SMTPReply(454, "4.7.0", "TLS not available due to temporary reason")

    # AUTH (RFC 4954)
    AUTH_OK = SMTPReply(235, "2.7.0", "Authentication successful")
    AUTH_FAILED = SMTPReply(535, "5.7.3", "Authentication unsuccessful")
    AUTH_UNRECOGNIZED = SMTPReply(504, "5.7.4", "Unrecognized authentication type")
    AUTH_TEMPFAIL = SMTPReply(454, "4.7.0", "Temporary authentication failure")
    AUTH_CANCELLED = SMTPReply(501, "5.0.0", "Authentication cancelled")
    AUTH_BAD_BASE64 = SMTPReply(501, "5.5.2", "Cannot Base64-decode Client responses")
    AUTH_ALREADY = SMTPReply(503, "5.5.1", "Already authenticated")
    AUTH_IN_TRANSACTION = SMTPReply(503, "5.5.1", "AUTH not permitted during a mail transaction")
    SEND_AS_DENIED = SMTPReply(550, "5.7.60", "SMTP; Client does not have permissions to send as this sender")

    # Transient trouble inside the gateway
    HUB_UNAVAILABLE = SMTPReply(451, "4.4.0", "Temporary server error. Please try again later")
    LOCAL_ERROR = SMTPReply(451, "4.3.0", "Temporary server error. Please try again later")
    # Exchange's back pressure (gateway/policy/backpressure.py), at MAIL.
    INSUFFICIENT_RESOURCES = SMTPReply(452, "4.3.1", "Insufficient system resources")


__all__ = ["SMTPReply", "SMTPError", "Reply"]
