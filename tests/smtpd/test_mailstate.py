"""gateway/smtpd/mailstate.py: the transaction between MAIL and its end."""

from gateway import testing
from gateway.smtpd.mailstate import MailState


def test_drop_aborts_and_end_hands_the_transaction_over():
    """drop() aborts the tier's transaction; end() gives it to the caller without aborting; both reset the count."""
    handler = testing.FakeHandler()
    mail = MailState()
    mail.drop()
    first = handler.begin(None, None)
    mail.begin(first, smtputf8=True)
    mail.recipients = 2
    mail.drop()
    assert first.aborted and mail.transaction is None and mail.recipients == 0
    second = handler.begin(None, None)
    mail.begin(second, smtputf8=False)
    mail.recipients = 1
    assert mail.end() is second and not second.aborted and mail.recipients == 0 and mail.transaction is None
