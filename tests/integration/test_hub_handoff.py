"""
The frontend as its own process (`--role frontend`): it hands each message to
a hub over SMTP, logs that hand-off, and without a hub the client gets a 4xx
and nothing is half-accepted.
"""

import re
import smtplib

from tests.integration.gatewayproc import Gateway


def test_no_hub_means_451_at_rcpt(tmp_path):
    """With no hub listening, RCPT gets 451 4.4.0 and the session goes on."""
    frontend = Gateway(tmp_path, role="frontend").start()
    try:
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=30) as s:
            s.ehlo("dev")
            s.mail("a@devices.example")
            assert s.rcpt("alice@corp.example") == (451, b"4.4.0 Temporary server error. Please try again later")
            assert s.noop()[0] == 250
        assert "hand-off to hub failed at RCPT" in frontend.log()
    finally:
        frontend.stop()


def test_hub_lost_before_end_of_data_gives_451_and_no_delivery(tmp_path):
    """The hub dies after RCPT: the client's final reply is a 4xx, and once a hub is back the message was never delivered."""
    hub = Gateway(tmp_path, role="hub").start()
    frontend = Gateway(tmp_path, role="frontend", config=hub.config, frontend_port=hub.frontend_port, hub_port=hub.hub_port).start()
    try:
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=30) as s:
            s.ehlo("dev")
            s.mail("a@devices.example")
            assert s.rcpt("lost@corp.example")[0] == 250
            hub.kill()
            code, text = s.data(b"Subject: lost\r\n\r\nnever half-accepted\r\n")
            assert (code, text) == (451, b"4.4.0 Temporary server error. Please try again later")
        hub.start()
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=30) as s:
            s.sendmail("a@devices.example", ["after@corp.example"], b"Subject: after\r\n\r\nx\r\n")
        hub.wait_until(lambda: hub.mailbox("after@corp.example"), what="the next message")
        assert hub.mailbox("lost@corp.example") == []
    finally:
        frontend.stop()
        hub.stop()


def test_frontend_hand_off_is_a_send_log(tmp_path):
    """Every message handed to the hub appears in the frontend's SMTP Send Protocol Log, as BDAT."""
    hub = Gateway(tmp_path, role="hub").start()
    frontend = Gateway(tmp_path, role="frontend", config=hub.config, frontend_port=hub.frontend_port, hub_port=hub.hub_port).start()
    try:
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=30) as s:
            s.sendmail("a@devices.example", ["alice@corp.example"], b"Message-ID: <handoff-1@devices.example>\r\n\r\nx\r\n")
        logs = hub.var / "logs" / "ProtocolLog" / "FrontEnd" / "SmtpSend"

        def logged():
            return "".join(f.read_text() for f in sorted(logs.glob("SEND*.LOG"))) if any(
                "Queued mail" in f.read_text() for f in logs.glob("SEND*.LOG")) else None

        text = frontend.wait_until(logged, what="the hand-off in the send log")
        assert "#Log-type: SMTP Send Protocol Log" in text
        assert re.search(r",Hub Pool,[0-9A-F]{16},\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,>,BDAT \d+ LAST,", text)
        # The hub's reply holds a comma, so the field is quoted.
        assert re.search(
            r',<,"250 2\.6\.0 <handoff-1@devices\.example> \[InternalId=\d+, Hostname=mail\.corp\.example\] Queued mail for delivery",', text
        )
    finally:
        frontend.stop()
        hub.stop()


def test_a_large_message_streamed_to_the_hub_arrives_byte_exact(tmp_path):
    """3 MB through a frontend and a hub on loopback: streamed on in BDAT chunks as it arrives, delivered to the Maildir unchanged."""
    hub = Gateway(tmp_path, role="hub").start()
    frontend = Gateway(tmp_path, role="frontend", config=hub.config, frontend_port=hub.frontend_port, hub_port=hub.hub_port).start()
    lines = b"".join(b"line %07d " % n + bytes(range(33, 127)) + b"\r\n" for n in range(3 * 1024 * 1024 // 108))
    body = b"Message-ID: <streamed-1@devices.example>\r\nSubject: large\r\n\r\n" + lines
    try:
        with smtplib.SMTP("127.0.0.1", frontend.frontend_port, timeout=60) as s:
            s.sendmail("a@devices.example", ["alice@corp.example"], body)
        [delivered] = hub.wait_until(lambda: hub.mailbox("alice@corp.example"), what="the large message")
        # The hub adds its trace header (Received:) in front; everything from the client is there unchanged.
        assert delivered.endswith(body)
        logs = hub.var / "logs" / "ProtocolLog" / "FrontEnd" / "SmtpSend"

        def logged():
            text = "".join(f.read_text() for f in logs.glob("SEND*.LOG"))
            return text if "Queued mail" in text else None

        sent = frontend.wait_until(logged, what="the hand-off in the send log")
        assert re.search(r",>,BDAT \d+,", sent) and re.search(r",>,BDAT \d+ LAST,", sent)
    finally:
        frontend.stop()
        hub.stop()
