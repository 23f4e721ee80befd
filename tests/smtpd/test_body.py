"""gateway/smtpd/body.py: DATA and BDAT over a recording channel, without a transport."""

import pytest

from gateway import testing
from gateway.errors import Reply, SMTPError
from gateway.smtpd.body import MessageBody, bare_line_end_reply
from gateway.smtpd.data import LineEndings
from gateway.smtpd.mailstate import MailState
from gateway.smtpd.observer import NullObserver
from gateway.smtpd.session import MailFrom
from tests.smtpd.fakechannel import FakeChannel, connector, session


def body_with(recipients=1, **changes):
    c = connector(**changes)
    s = session(c)
    mail = MailState()
    handler = testing.FakeHandler()
    if recipients is not None:
        mail.begin(handler.begin(s, MailFrom(None, None, None)), False)
        mail.recipients = recipients
    channel = FakeChannel()
    return MessageBody(channel, s, c, mail, NullObserver()), channel, handler, s


def test_data_needs_mail_then_a_recipient():
    """DATA before MAIL is 503 5.5.1, before any accepted RCPT 503 5.5.2."""
    body, *_ = body_with(recipients=None)
    with pytest.raises(SMTPError) as e:
        body.do_DATA("")
    assert e.value.reply is Reply.NEED_MAIL
    body, *_ = body_with(recipients=0)
    with pytest.raises(SMTPError) as e:
        body.do_DATA("")
    assert e.value.reply is Reply.NEED_RCPT


def test_data_content_up_to_the_dot_goes_to_the_transaction_and_the_rest_back_to_the_framing():
    """take_data hands back what follows the lone dot; the message then ends, its xforward and junk count reset."""
    body, channel, handler, s = body_with()
    s.xforward = {"ADDR": "192.0.2.9"}
    channel.junk_commands = 5
    assert body.do_DATA("") is Reply.START_DATA and body.in_data
    assert body.take_data(b"Subject: x\r\n\r\n..hi\r\n") is None
    assert body.take_data(b".\r\nQUIT\r\n") == b"QUIT\r\n" and not body.in_data
    body.end_of_message()
    assert handler.transactions[0].body == b"Subject: x\r\n\r\n.hi\r\n"
    assert [c[0] for c in channel.calls] == ["answer"] and handler.finished
    assert s.xforward == {} and channel.junk_commands == 0


def test_the_first_refusal_at_the_end_of_data_wins_and_drops_the_transaction():
    """Bare line ends on a reject connector come before the size: one reply, the transaction dropped."""
    body, channel, handler, _ = body_with(bare_linefeeds="reject", max_message_size=4)
    body.do_DATA("")
    body.take_data(b"a\nbcdefgh\r\n.\r\n")
    body.end_of_message()
    assert channel.calls == [("drop",), ("answer", Reply.BARE_LINEFEED)]
    assert handler.finished == []


def test_over_size_content_is_counted_not_written():
    """Past MaxMessageSize the bytes are dropped and the end of data answers 552."""
    body, channel, handler, _ = body_with(max_message_size=4)
    body.do_DATA("")
    body.take_data(b"abcdefgh\r\n.\r\n")
    body.end_of_message()
    assert handler.transactions[0].body == b""
    assert channel.calls == [("drop",), ("answer", Reply.SIZE_EXCEEDED)]


def test_a_bdat_chunk_without_mail_is_read_whole_then_refused():
    """RFC 3030: the announced octets are read whatever the verdict; the refusal comes when the chunk is in."""
    body, channel, _, _ = body_with(recipients=None)
    assert body.do_BDAT("5") is None and body.in_chunk
    chunk, rest = body.split_chunk(b"abcRSET\r\n")
    assert (chunk, rest) == (b"abcRS", b"ET\r\n") and body.chunk_due
    body.take_chunk(chunk)
    body.end_chunk()
    assert channel.calls == [("answer", Reply.NEED_MAIL)] and not body.in_chunk


def test_bdat_chunks_are_acknowledged_then_last_ends_the_message():
    """A chunk may come in pieces; it is answered when whole; BDAT 0 LAST is due at once and ends the message."""
    body, channel, handler, _ = body_with()
    body.do_BDAT("4")
    for part in (b"a\r", b"\n"):
        chunk, _ = body.split_chunk(part)
        body.take_chunk(chunk)
    assert not body.chunk_due
    body.take_chunk(body.split_chunk(b"b")[0])
    body.end_chunk()
    assert channel.calls[0][0] == "answer_now" and channel.calls[0][1].text == "4 octets received"
    body.do_BDAT("0 LAST")
    assert body.chunk_due
    body.end_chunk()
    assert handler.transactions[0].body.startswith(b"a\r\nb") and handler.finished


def test_the_bare_line_end_reply_names_what_was_found():
    """Both bare CR and bare LF: the reply says both."""
    check = LineEndings()
    check.feed(b"a\rb\nc")
    assert bare_line_end_reply(check) is Reply.BARE_LINE_ENDS
