"""
The checks at MAIL that depend on the session rather than the sender: a
connector that requires TLS, and MessageRateLimit.

Each returns a verdict, None to go on or the refusal, and writes nothing;
the session (gateway/smtpd/commands.py) turns a refusal into its reply.
The sender's own checks (Submit, send-as, declared SIZE) are
SessionPolicy.check_mail in checks.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.errors import Reply, SMTPError, SMTPReply

if TYPE_CHECKING:
    from gateway.config import ReceiveConnector
    from gateway.policy.limits import ConnectionLimits
    from gateway.smtpd.session import Session


def tls_refusal(connector: ReceiveConnector, session: Session) -> SMTPError | None:
    """RequireTLS: no MAIL before STARTTLS (530 5.7.0), with the reason for the log."""
    if connector.require_tls and session.tls is None:
        return SMTPError(Reply.TLS_REQUIRED, reason="RequireTLS connector, no STARTTLS yet")
    return None


def rate_refusal(limits: ConnectionLimits | None, connector: ReceiveConnector, session: Session, now: float) -> SMTPReply | None:
    """
    MessageRateLimit, counted per MessageRateSource: the client address, the
    user, or both. A message within the limits is counted (this is the
    MAIL that starts it); one over them gets 421 4.4.2 and the session ends.
    """
    if limits is None:
        return None
    source = connector.message_rate_source
    if source in ("IPAddress", "All") and not limits.message(connector, session.client_ip, now):
        return Reply.RATE_LIMITED
    identity = session.identity
    if source in ("User", "All") and identity is not None and not limits.message(connector, "user:" + identity.account, now):
        return Reply.RATE_LIMITED
    return None
