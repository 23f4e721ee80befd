"""gateway/policy/mail.py: RequireTLS and MessageRateLimit as verdicts."""

import dataclasses

from gateway.auth.identity import Identity
from gateway.auth.sendas import SenderPatterns
from gateway.errors import Reply
from gateway.policy.limits import ConnectionLimits
from gateway.policy.mail import rate_refusal, tls_refusal
from gateway.smtpd.session import TLSInfo
from tests.smtpd.fakechannel import connector, session


def test_require_tls_refuses_mail_in_clear_text_only():
    """530 5.7.0 with the reason for the log before STARTTLS; nothing after it, nothing where TLS is not required."""
    strict = connector(require_tls=True)
    s = session(strict)
    refusal = tls_refusal(strict, s)
    assert refusal is not None and refusal.reply is Reply.TLS_REQUIRED and "RequireTLS" in refusal.log_fields["reason"]
    s.tls = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", "AB" * 20)
    assert tls_refusal(strict, s) is None
    assert tls_refusal(connector(), session(connector())) is None


def test_the_message_rate_counts_the_address_or_the_user_as_the_connector_says():
    """MessageRateSource IPAddress counts the client address, User the login, All both; no limits object, no limit."""
    limits = ConnectionLimits()
    by_user = connector(message_rate_limit=1, message_rate_source="User")
    s = session(by_user)
    assert rate_refusal(None, by_user, s, 0.0) is None
    # No login: nothing to count by user.
    assert [rate_refusal(limits, by_user, s, 0.0) for _ in range(3)] == [None, None, None]
    s.identity = Identity("alice@corp.example", SenderPatterns.of(()))
    assert [rate_refusal(limits, by_user, s, 0.0) for _ in range(2)] == [None, Reply.RATE_LIMITED]
    by_ip = dataclasses.replace(by_user, name="other", message_rate_source="IPAddress")
    assert [rate_refusal(limits, by_ip, s, 0.0) for _ in range(2)] == [None, Reply.RATE_LIMITED]
    # A minute later the window has moved on.
    assert rate_refusal(limits, by_ip, s, 61.0) is None
