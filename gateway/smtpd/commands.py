"""
The session's commands outside the message body, TLS and AUTH: HELO and
EHLO, MAIL and RCPT, RSET, NOOP, VRFY, HELP, QUIT, XFORWARD.

Each handler returns a reply (or a Deferred of one) or raises SMTPError; the
framing (protocol.py) sends it in command order. Decisions are the policy's:
SessionPolicy for the sender and the recipients, gateway/policy/mail.py for
RequireTLS and MessageRateLimit; the tier's MailHandler begins the
transaction.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gateway.address import parse_path, take_smtputf8
from gateway.config import ReceiveConnector
from gateway.connectors import client_address
from gateway.dsnparams import take_mail_dsn, take_rcpt_dsn
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.headerfirewall import firewalled
from gateway.policy.checks import SessionPolicy
from gateway.policy.headerfrom import header_from_fixed
from gateway.policy.mail import rate_refusal, tls_refusal
from gateway.policy.rights import Principal, Right
from gateway.smtpd import mailparams, xtext
from gateway.smtpd.authentication import SaslAuth
from gateway.smtpd.channel import Channel
from gateway.smtpd.mailstate import MailState
from gateway.smtpd.session import MailFrom, MailHandler, Session
from gateway.smtpd.starttls import StartTLS

log = Logger(namespace="exgateway.smtpd")

HELP_COMMANDS = "HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"
XFORWARD_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE", "CONNECTOR", "AUTH", "TLS")
_HELO_SAFE = re.compile(r"^[\x21-\x7e]+$")
# C0 and C1 controls, DEL, and Unicode's line and paragraph separators.
_XFORWARD_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def xforward_attributes(arg: str) -> dict[str, str]:
    """XFORWARD's attributes, xtext-decoded and checked; SMTPError (501) for anything that could be a header injection."""
    attrs = {}
    for token in arg.split():
        key, eq, value = token.partition("=")
        key = key.upper()
        if not eq or key not in XFORWARD_ATTRS:
            raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad XFORWARD attribute {token!r}")
        try:
            value = xtext.decode(value)
        except ValueError:
            raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad xtext in {token!r}") from None
        if value in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
            continue
        if not value or _XFORWARD_UNSAFE.search(value):
            # These values end up in headers: no control characters, ever.
            # Letters beyond ASCII are kept (a login name "jürgen"), xtext carried them as UTF-8.
            raise SMTPError(Reply.BAD_SYNTAX, reason=f"unsafe XFORWARD {key} value")
        if key == "ADDR":
            value = value[5:] if value.upper().startswith("IPV6:") else value
            try:
                value = str(client_address(value))
            except ValueError:
                raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad XFORWARD ADDR {value!r}") from None
        attrs[key] = value
    if not attrs and not arg.strip():
        raise SMTPError(Reply.BAD_SYNTAX, reason="XFORWARD without attributes")
    return attrs


class Commands:
    """The envelope and session commands of one session."""

    __slots__ = ("channel", "session", "connector", "mail", "handler", "policy", "clock", "starttls", "sasl", "limits")

    def __init__(
        self, channel: Channel, session: Session, connector: ReceiveConnector, mail: MailState, handler: MailHandler,
        policy: SessionPolicy, clock: Any, starttls: StartTLS, sasl: SaslAuth, limits: Any = None,
    ) -> None:
        self.channel = channel
        self.session = session
        self.connector = connector
        self.mail = mail
        self.handler = handler
        self.policy = policy
        # IReactorTime: MessageRateLimit counts by its seconds().
        self.clock = clock
        self.starttls = starttls
        self.sasl = sasl
        # ConnectionLimits that counted this connection in (the listener's), if any: MessageRateLimit.
        self.limits = limits

    def do_HELO(self, arg: str) -> SMTPReply:
        return self._hello(arg, esmtp=False)

    def do_EHLO(self, arg: str) -> SMTPReply:
        return self._hello(arg, esmtp=True)

    def _hello(self, arg: str, esmtp: bool) -> SMTPReply:
        arg = arg.strip()
        if not arg or " " in arg or not _HELO_SAFE.match(arg):
            raise SMTPError(Reply.BAD_HELO, helo=arg)
        self.channel.drop_transaction()
        session = self.session
        session.helo = arg
        session.esmtp = esmtp
        session.xforward = {}
        greeting = f"{self.connector.fqdn} Hello [{session.client_ip}]"
        if not esmtp:
            return SMTPReply(250, "", greeting)
        c = self.connector
        lines = [greeting]
        lines += [f"SIZE {c.max_message_size}"] if c.size_enabled else []
        lines += ["PIPELINING"] if c.pipelining_enabled else []
        lines += ["8BITMIME"] if c.eight_bit_mime_enabled else []
        lines += ["ENHANCEDSTATUSCODES"] if c.enhanced_status_codes_enabled else []
        lines += ["CHUNKING"] if c.chunking_enabled else []
        lines.append("DSN")
        lines.append("SMTPUTF8")
        if self.starttls.offered():
            lines.append("STARTTLS")
        mechanisms = self.sasl.mechanisms()
        if mechanisms and session.identity is None and session.principal is not Principal.GATEWAY_NODE:
            lines.append("AUTH " + " ".join(mechanisms))
        if Right.ACCEPT_XFORWARD in session.rights:
            lines.append("XFORWARD " + " ".join(XFORWARD_ATTRS))
        lines.append("HELP")
        return SMTPReply(250, "", "\n".join(lines))

    def _greeted(self) -> bool:
        """
        HELO/EHLO given. After STARTTLS a client that goes straight to MAIL
        is tolerated, as Postfix does (some devices never repeat EHLO): the
        session has no HELO name then (the one given in clear is not reused).
        """
        return self.session.helo is not None or (self.session.tls is not None and not self.connector.implicit_tls)

    def do_MAIL(self, arg: str) -> SMTPReply | None:
        if not self._greeted():
            raise SMTPError(Reply.NEED_HELO)
        if self.mail.transaction is not None:
            raise SMTPError(Reply.SENDER_ALREADY)
        if arg[:5].upper() != "FROM:":
            raise SMTPError(Reply.BAD_SYNTAX, reason="MAIL without FROM:")
        session, connector = self.session, self.connector
        sender, params = parse_path(arg[5:], sender=True)
        dsn = take_mail_dsn(params)
        smtputf8 = take_smtputf8(params)
        size = body = auth = None
        for key, value in params.items():
            if (key == "SIZE" and not connector.size_enabled) or (key == "BODY" and not connector.eight_bit_mime_enabled):
                raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter=key)
            if key == "SIZE" and value is not None and value.isdigit():
                size = int(value)
            elif key == "BODY":
                body = mailparams.body_parameter(value)
            elif key == "AUTH":
                auth = mailparams.auth_parameter(value, mailparams.trusts_auth_parameter(session))
            elif key == "SIZE":
                raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad SIZE value {value!r}")
            else:
                raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter=key)
        refusal = tls_refusal(connector, session)
        if refusal is not None:
            raise refusal
        self.policy.check_mail(session.rights, sender, size, connector.max_message_size, session.identity)
        rate = rate_refusal(self.limits, connector, session, self.clock.seconds())
        if rate is not None:
            self.channel.answer_now(rate)
            self.channel.close()
            return None
        mail = MailFrom(sender, size, body, auth=auth, dsn=dsn, smtputf8=smtputf8)
        # Exchange's header firewall: organisation headers only from the organisation's servers.
        txn = firewalled(self.handler.begin(session, mail), session.rights, connector.max_header_size, session.session_id)
        # [authentication] header_from = "authenticated_user": a foreign From: is replaced as it streams, not refused.
        txn = header_from_fixed(txn, session, self.sasl.auth, str(sender), connector.max_header_size)
        self.mail.begin(txn, smtputf8)
        return Reply.SENDER_OK

    def do_RCPT(self, arg: str) -> Any:
        txn = self.mail.transaction
        if txn is None:
            raise SMTPError(Reply.NEED_MAIL)
        if arg[:3].upper() != "TO:":
            raise SMTPError(Reply.BAD_SYNTAX, reason="RCPT without TO:")
        recipient, params = parse_path(arg[3:], sender=False, utf8=self.mail.smtputf8)
        # NOTIFY/ORCPT are taken whether or not DSN was offered: PHPMailer sends them unasked.
        dsn = take_rcpt_dsn(params)
        if params:
            raise SMTPError(Reply.UNKNOWN_PARAMETER, parameter=",".join(params))
        recipient = self.policy.resolve_postmaster(recipient)
        self.policy.check_rcpt(self.session.rights, recipient, self.mail.recipients, self.connector.max_recipients)
        result = txn.add_recipient(recipient, dsn)
        if isinstance(result, Deferred):
            return result.addCallback(self._recipient_added)
        return self._recipient_added(result)

    def _recipient_added(self, reply: SMTPReply) -> SMTPReply:
        if reply.positive:
            self.mail.recipients += 1
        return reply

    def do_RSET(self, arg: str) -> SMTPReply:
        self.channel.drop_transaction()
        self.session.xforward = {}
        return Reply.RESET

    def do_NOOP(self, arg: str) -> SMTPReply:
        return Reply.OK

    def do_VRFY(self, arg: str) -> SMTPReply:
        return Reply.VRFY

    def do_HELP(self, arg: str) -> SMTPReply:
        """The commands this session can use now: STARTTLS and AUTH only where EHLO would offer them."""
        commands = HELP_COMMANDS
        if self.starttls.offered():
            commands += " STARTTLS"
        if self.sasl.offered() and self.session.identity is None:
            commands += " AUTH"
        return Reply.HELP.format(commands=commands)

    def do_QUIT(self, arg: str) -> None:
        self.channel.send(Reply.BYE)
        self.channel.close()

    def do_XFORWARD(self, arg: str) -> SMTPReply:
        if Right.ACCEPT_XFORWARD not in self.session.rights:
            raise SMTPError(Reply.UNRECOGNIZED, reason="XFORWARD without the right")
        if self.session.helo is None:
            raise SMTPError(Reply.NEED_HELO)
        if self.mail.transaction is not None:
            raise SMTPError(Reply.XFORWARD_IN_TRANSACTION)
        self.session.xforward.update(xforward_attributes(arg))
        return Reply.XFORWARD_OK
