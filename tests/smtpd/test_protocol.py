"""The ESMTP server over StringTransport: every reply a client can see."""

import dataclasses

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.errors import Reply, SMTPError, SMTPReply
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.protocol import ESMTPServer

NOW = 1_795_000_000.0


class Client:
    def __init__(self, connector="Default Frontend", ip="192.0.2.1", tarpit=False, transport=StringTransport, **sections):
        cfg = testing.config(**sections)
        self.connector = next(c for c in cfg.receive_connectors if c.name == connector)
        if not tarpit:
            # Most tests look at replies, not at their timing: no tarpit unless asked.
            self.connector = dataclasses.replace(self.connector, tarpit_interval=0.0)
        self.handler = testing.FakeHandler()
        self.clock = Clock()
        self.clock.advance(NOW)
        policy = SessionPolicy(AcceptedDomains(cfg.accepted_domains))
        self.proto = ESMTPServer(self.connector, self.handler, policy, self.clock, node=testing.node_credential())
        self.transport = transport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", ip, 40000)
        )
        self.proto.makeConnection(self.transport)
        self.banner = self.read()

    def read(self) -> list[str]:
        out = self.transport.value().decode()
        self.transport.clear()
        assert out == "" or out.endswith("\r\n")
        return out.split("\r\n")[:-1]

    def send(self, data: bytes | str) -> list[str]:
        if isinstance(data, str):
            data = data.encode()
        self.proto.dataReceived(data)
        return self.read()

    def hello(self):
        lines = self.send("EHLO client.example\r\n")
        assert lines[-1] == "250 HELP"


def test_banner_names_fqdn_and_rfc5322_date():
    """The 220 banner carries the connector FQDN and the date, Exchange style."""
    c = Client()
    assert c.banner == ["220 mail.corp.example exgateway ESMTP MAIL Service ready at Wed, 18 Nov 2026 11:06:40 +0000"]


def test_custom_banner_can_name_the_connector():
    """A banner template with {connector} shows which connector took the connection."""
    c = Client("Anon Relay", receive_connectors=[{"name": "Anon Relay", "role": "frontend", "bindings": ["127.0.0.1:25"], "banner": "220 {connector} ready"}])
    assert c.banner == ["220 EXSERVER\\Anon Relay ready"]


def test_ehlo_lists_extensions_and_helo_does_not():
    """EHLO advertises SIZE, PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES; HELO is a single line."""
    c = Client()
    assert c.send("EHLO dev\r\n") == [
        "250-mail.corp.example Hello [192.0.2.1]",
        "250-SIZE 37748736",
        "250-PIPELINING",
        "250-8BITMIME",
        "250-ENHANCEDSTATUSCODES",
        "250-CHUNKING",
        "250-DSN",
        "250-SMTPUTF8",
        "250 HELP",
    ]
    assert c.send("HELO dev\r\n") == ["250 mail.corp.example Hello [192.0.2.1]"]


def test_xforward_offered_only_to_exchange_servers():
    """The hub offers XFORWARD once a gateway node proved the node secret; before that, and on the frontend, it is unknown."""
    hub = Client(connector="Default", ip="127.0.0.1")
    ehlo = hub.send("EHLO fe\r\n")
    assert "250-AUTH X-EXGW-NODE" in ehlo and not [line for line in ehlo if "XFORWARD" in line]
    assert hub.send("XFORWARD ADDR=10.0.0.1\r\n") == ["500 5.3.3 Unrecognized command"]
    assert hub.send(testing.node_login(testing.node_credential()))[-1] == "235 2.7.0 Authentication successful"
    ehlo = hub.send("EHLO fe\r\n")
    assert "250-XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE CONNECTOR AUTH TLS" in ehlo
    assert not [line for line in ehlo if line.startswith("250-AUTH")]
    assert hub.proto.session.node == "FRONTEND1"
    fe = Client()
    assert fe.send("EHLO x\r\nXFORWARD ADDR=10.0.0.1\r\n")[-1] == "500 5.3.3 Unrecognized command"


def test_full_transaction_replies():
    """The dialogue of the seed's telnet transcripts, reply by reply."""
    c = Client()
    c.hello()
    assert c.send("MAIL FROM:<printer@devices.example>\r\n") == ["250 2.1.0 Sender OK"]
    assert c.send("RCPT TO:<alice@corp.example>\r\n") == ["250 2.1.5 Recipient OK"]
    assert c.send("DATA\r\n") == ["354 Start mail input; end with <CRLF>.<CRLF>"]
    assert c.send("Subject: hi\r\n\r\nbody\r\n.\r\n") == [
        "250 2.6.0 <id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery"
    ]
    assert c.handler.finished[0].body == b"Subject: hi\r\n\r\nbody\r\n"
    assert c.send("QUIT\r\n") == ["221 2.0.0 Service closing transmission channel"]
    assert c.transport.disconnecting


def test_relay_to_non_accepted_domain_refused_and_session_goes_on():
    """550 5.7.54 for an outside recipient; the next, internal one is still accepted."""
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\n")
    assert c.send("RCPT TO:<bob@elsewhere.example>\r\n") == ["550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"]
    assert c.send("RCPT TO:<alice@corp.example>\r\n") == ["250 2.1.5 Recipient OK"]
    assert [str(r) for r in c.handler.transactions[0].recipients] == ["alice@corp.example"]


@pytest.mark.parametrize(
    "commands, reply",
    [
        ("MAIL FROM:<a@b.example>", "503 5.5.2 Send hello first"),
        ("EHLO x\r\nRCPT TO:<alice@corp.example>", "503 5.5.2 Need mail command"),
        ("EHLO x\r\nDATA", "503 5.5.2 Need mail command"),
        ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nDATA", "503 5.5.2 Need rcpt command"),
        ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>", "503 5.5.1 Sender already specified"),
        ("BOGUS", "500 5.3.3 Unrecognized command"),
        ("EHLO", "501 5.5.4 Invalid domain name"),
        ("EHLO x\r\nMAIL TO:<a@b.example>", "501 5.5.4 Invalid arguments"),
        ("EHLO x\r\nMAIL FROM:<a@b.example", "501 5.1.7 Invalid address"),
        ("EHLO x\r\nMAIL FROM:<a@b.example> FOO=1", "555 5.5.4 Unsupported parameter"),
        ("EHLO x\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME", "555 5.5.4 Unsupported parameter"),
        ("EHLO x\r\nMAIL FROM:<a@b.example> SIZE=40000000", "552 5.3.4 Message size exceeds fixed maximum message size"),
        ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<>", "501 5.1.3 Invalid address"),
        ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example> XNOTIFY=NEVER", "555 5.5.4 Unsupported parameter"),
        ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA now", "501 5.5.4 Invalid arguments"),
        ("VRFY alice", "252 2.1.5 Cannot VRFY user, but will accept message for delivery"),
        ("NOOP", "250 2.0.0 OK"),
        ("RSET", "250 2.0.0 Resetting"),
    ],
)
def test_sequence_and_syntax_replies(commands, reply):
    """Each misstep gets its own reply code and enhanced status."""
    c = Client()
    lines = c.send(commands + "\r\n")
    assert lines[-1] == reply
    # ... and the session goes on.
    assert c.send("NOOP\r\n") == ["250 2.0.0 OK"]


def test_help_is_multiline():
    c = Client()
    assert c.send("HELP\r\n") == ["214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP", "214 2.0.0 End of HELP info"]


def test_lenient_mail_from_without_brackets():
    """Devices that send `MAIL FROM: user@host` are understood."""
    c = Client()
    c.hello()
    assert c.send("MAIL FROM: scanner@devices.example\r\n") == ["250 2.1.0 Sender OK"]
    assert str(c.handler.transactions[0].mail.sender) == "scanner@devices.example"


def test_null_sender_accepted():
    c = Client()
    c.hello()
    assert c.send("MAIL FROM:<>\r\n") == ["250 2.1.0 Sender OK"]


def test_command_line_over_512_octets_gets_500_and_session_goes_on():
    """A 600-octet command is refused as too long, whether it arrives whole or in pieces."""
    c = Client()
    assert c.send("NOOP " + "x" * 600 + "\r\n") == ["500 5.5.2 Line too long"]
    assert c.send("NOOP " + "x" * 300) == []
    assert c.send("y" * 300) == []
    assert c.send("z" * 300 + "\r\nNOOP\r\n") == ["500 5.5.2 Line too long", "250 2.0.0 OK"]


def test_command_split_across_reads():
    c = Client()
    assert c.send("NO") == []
    assert c.send("OP\r\n") == ["250 2.0.0 OK"]


def test_text_line_over_1000_octets_is_accepted_unchanged():
    """msmtp's 1,200-character cron line (issue 18 item 2): accepted and stored byte for byte; command lines keep their 512 limit."""
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    body = "Subject: cron\r\n\r\n" + "x" * 1200 + "\r\n"
    assert c.send(body + ".\r\n")[0].startswith("250 2.6.0")
    assert c.handler.finished[0].body == body.encode()
    assert c.send("NOOP " + "y" * 600 + "\r\n") == ["500 5.5.2 Line too long"]


def test_bare_lf_is_normalised_by_default_and_the_message_accepted():
    """curl --upload-file / smtplib with LF text (issue 18 item 1): 250, and the stored body has CRLF lines."""
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    # curl ends a file whose last byte is LF with <CRLF>.<CRLF>, as here.
    assert c.send(b"Subject: x\n\nhello\n\r\n.\r\n")[0].startswith("250 2.6.0")
    assert c.handler.finished[0].body == b"Subject: x\r\n\r\nhello\r\n\r\n"


@pytest.mark.parametrize("body, reply", [
    (b"a\nb\r\n", "554 5.6.0 Invalid message content, contains bare linefeeds"),
    (b"a\rb\r\n", "554 5.6.0 Invalid message content, contains bare carriage returns"),
    (b"a\rb\nc\r\n", "554 5.6.0 Invalid message content, contains bare linefeeds and carriage returns"),
])
def test_a_reject_connector_refuses_bare_line_ends_naming_what_it_found(body, reply):
    c = Client("Strict", receive_connectors=[{"name": "Strict", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["AnonymousUsers"], "bare_linefeeds": "reject"}])
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    assert c.send(body + b".\r\n") == [reply]
    assert c.handler.finished == [] and c.handler.transactions[0].aborted
    assert c.send("MAIL FROM:<a@b.example>\r\n") == ["250 2.1.0 Sender OK"]


def test_bare_lf_message_refused_and_smuggled_command_not_executed():
    """<LF>.<LF> neither ends the message nor lets the next 'command' run (connector set to reject)."""
    c = Client("Strict", receive_connectors=[{"name": "Strict", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["AnonymousUsers"], "bare_linefeeds": "reject"}])
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    lines = c.send("Subject: a\r\n\r\nx\n.\nMAIL FROM:<ceo@corp.example>\r\nRCPT TO:<x@corp.example>\r\nDATA\r\n\r\nfake\r\n.\r\n")
    assert lines == ["554 5.6.0 Invalid message content, contains bare linefeeds"]
    assert len(c.handler.transactions) == 1 and c.handler.transactions[0].aborted
    assert c.handler.finished == []


def test_body_over_max_size_refused_at_end_of_data():
    """552 5.3.4 at the end of data when the body exceeds the connector limit."""
    c = Client("Small", receive_connectors=[{"name": "Small", "role": "frontend", "bindings": ["127.0.0.1:25"], "max_message_size": 100, "permission_groups": ["AnonymousUsers"]}])
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    assert c.send(("y" * 50 + "\r\n") * 5 + ".\r\n") == ["552 5.3.4 Message size exceeds fixed maximum message size"]
    assert c.handler.finished == []
    assert len(c.handler.transactions[0].body) <= 100


def test_too_many_recipients():
    """452 4.5.3 past the connector's max recipients."""
    c = Client("Few", receive_connectors=[{"name": "Few", "role": "frontend", "bindings": ["127.0.0.1:25"], "max_recipients": 2, "permission_groups": ["AnonymousUsers"]}])
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\n")
    lines = c.send("RCPT TO:<a@corp.example>\r\nRCPT TO:<b@corp.example>\r\nRCPT TO:<c@corp.example>\r\n")
    assert lines == ["250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK", "452 4.5.3 Too many recipients"]


def test_pipelined_replies_stay_in_order_when_answers_are_asynchronous():
    """Replies follow command order even when RCPT answers come later, out of order."""
    c = Client()
    c.hello()
    c.handler.rcpt_deferreds = []
    lines = c.send(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<one@corp.example>\r\nRCPT TO:<two@corp.example>\r\n"
        "RCPT TO:<x@outside.example>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    )
    assert lines == ["250 2.1.0 Sender OK"]
    (_r1, d1), = c.handler.rcpt_deferreds
    d1.callback(Reply.RECIPIENT_OK)
    assert c.read() == ["250 2.1.5 Recipient OK"]
    (_r2, d2) = c.handler.rcpt_deferreds[1]
    d2.callback(SMTPReply(450, "4.2.0", "mailbox busy"))
    assert c.read() == [
        "450 4.2.0 mailbox busy",
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
        "354 Start mail input; end with <CRLF>.<CRLF>",
        "250 2.6.0 <id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery",
        "221 2.0.0 Service closing transmission channel",
    ]
    assert c.handler.finished[0].body == b"Subject: p\r\n\r\nbody\r\n"


def test_final_reply_waits_for_the_handler():
    """No 250 before the tier says the message is safe; the next command waits too."""
    c = Client()
    c.hello()
    c.handler.finish_deferreds = []
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@corp.example>\r\nDATA\r\n")
    assert c.send("x\r\n.\r\nNOOP\r\n") == []
    c.handler.finish_deferreds[0].callback(SMTPReply(250, "2.6.0", "queued"))
    assert c.read() == ["250 2.6.0 queued", "250 2.0.0 OK"]


def test_replies_go_to_the_kernel_at_once_pipelined_ones_in_one_send():
    """No wait for the reactor's next write pass; replies to commands read together leave together."""
    c = Client(transport=testing.SocketLikeTransport)
    assert c.transport.sends == [b"220 mail.corp.example exgateway ESMTP MAIL Service ready at Wed, 18 Nov 2026 11:06:40 +0000\r\n"]
    c.proto.dataReceived(b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<a@corp.example>\r\n")
    assert len(c.transport.sends) == 2
    assert c.transport.sends[1].endswith(b"250 HELP\r\n250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n")
    c.handler.finish_deferreds = []
    c.proto.dataReceived(b"DATA\r\nx\r\n.\r\n")
    assert c.transport.sends[2:] == [b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"]
    # The 250 comes when the tier has the message, outside any input: sent right then.
    c.handler.finish_deferreds[0].callback(SMTPReply(250, "2.6.0", "queued"))
    assert c.transport.sends[3:] == [b"250 2.6.0 queued\r\n"]
    # The 221 goes out before the close, which the reactor completes.
    c.proto.dataReceived(b"QUIT\r\n")
    assert c.transport.sends[4:] == [b"221 2.0.0 Service closing transmission channel\r\n"]
    assert c.transport.disconnecting


def test_handler_refusal_and_unexpected_error_become_replies():
    """An SMTPError from the tier is its reply; any other error is a 451, never a crash."""
    c = Client()
    c.hello()
    c.handler.finish_deferreds = []
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@corp.example>\r\nDATA\r\nx\r\n.\r\n")
    c.handler.finish_deferreds[0].errback(SMTPError(Reply.HUB_UNAVAILABLE))
    assert c.read() == ["451 4.4.0 Temporary server error. Please try again later"]
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@corp.example>\r\nDATA\r\nx\r\n.\r\n")
    c.handler.finish_deferreds[1].errback(RuntimeError("disk on fire"))
    assert c.read() == ["451 4.3.0 Temporary server error. Please try again later"]
    assert c.send("NOOP\r\n") == ["250 2.0.0 OK"]


def test_rset_aborts_transaction():
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@corp.example>\r\n")
    assert c.send("RSET\r\n") == ["250 2.0.0 Resetting"]
    assert c.handler.transactions[0].aborted
    assert c.send("RCPT TO:<a@corp.example>\r\n") == ["503 5.5.2 Need mail command"]


def test_disconnect_mid_data_aborts():
    """A client that vanishes mid-DATA leaves nothing to deliver."""
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@corp.example>\r\nDATA\r\nhalf a mess")
    c.proto.connectionLost(None)
    assert c.handler.transactions[0].aborted and c.handler.finished == []


def test_inactivity_timeout():
    """451 4.7.0 after the connector's inactivity timeout, then the connection closes."""
    c = Client()
    c.clock.advance(299)
    assert c.read() == []
    c.send("NOOP\r\n")
    c.clock.advance(299)
    assert c.read() == []
    c.clock.advance(1)
    assert c.read() == ["451 4.7.0 Timeout waiting for client input"]
    assert c.transport.disconnecting


def test_anonymous_spoof_of_authoritative_sender_without_right():
    """Without Accept-Authoritative-Domain-Sender, an internal sender is refused (550 5.7.1)."""
    c = Client("Partners only", receive_connectors=[{"name": "Partners only", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["ExchangeUsers"]}])
    c.hello()
    assert c.send("MAIL FROM:<ceo@corp.example>\r\n") == ["530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM"]


def test_hub_accepts_xforward_and_records_origin():
    """XFORWARD on the hub sets the origin the Received header will name."""
    c = Client(connector="Default", ip="127.0.0.1")
    c.hello()
    c.send(testing.node_login(testing.node_credential()))
    assert c.send("XFORWARD ADDR=192.0.2.44 PORT=5555 HELO=printer01 PROTO=ESMTP CONNECTOR=EXSERVER\\Default+20Frontend\r\n") == ["250 2.0.0 Ok"]
    c.send("MAIL FROM:<a@b.example>\r\n")
    origin = c.handler.transactions[0].session.origin()
    assert (origin.client_ip, origin.client_port, origin.helo, origin.connector) == ("192.0.2.44", 5555, "printer01", "EXSERVER\\Default Frontend")
    assert c.send("XFORWARD ADDR=1.2.3.4\r\n") == ["503 5.5.1 XFORWARD not permitted inside a mail transaction"]


def test_xforward_value_with_control_characters_is_refused():
    """XFORWARD values end up in headers: an encoded CRLF is a syntax error, not a header injection."""
    c = Client(connector="Default", ip="127.0.0.1")
    c.hello()
    c.send(testing.node_login(testing.node_credential()))
    assert c.send("XFORWARD HELO=evil+0D+0AX-Injected:+20yes\r\n") == ["501 5.5.4 Invalid arguments"]
    assert c.handler.transactions == []


STRICT = [{"name": "Strict", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["AnonymousUsers"],
           "bare_linefeeds": "reject"}]


def bdat_client(*args, **sections):
    c = Client(*args, **sections)
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\n")
    return c


def test_bdat_single_chunk_is_taken_verbatim():
    """BDAT is length-framed: no dot-unstuffing, and a CRLF.CRLF inside ends nothing."""
    c = bdat_client()
    body = b"Subject: b\r\n\r\n..two dots\r\n.\r\nstill body\r\n"
    assert c.send(b"BDAT %d LAST\r\n" % len(body) + body + b"NOOP\r\n") == [
        "250 2.6.0 <id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery",
        "250 2.0.0 OK",
    ]
    assert c.handler.finished[0].body == body


def test_bdat_chunks_split_across_reads():
    """Each non-final chunk is acknowledged; chunk bytes may arrive in any pieces."""
    c = bdat_client()
    assert c.send(b"BDAT 12\r\nSubject: x") == []
    assert c.send(b"\r\n") == ["250 2.0.0 12 octets received"]
    assert c.send(b"BDAT 6 LAST\r\n\r\nbo") == []
    assert c.send(b"dy") == ["250 2.6.0 <id@x> [InternalId=1, Hostname=mail.corp.example] Queued mail for delivery"]
    assert c.handler.finished[0].body == b"Subject: x\r\n\r\nbody"


def test_bdat_zero_last_ends_the_message():
    c = bdat_client()
    c.send(b"BDAT 4\r\nab\r\n")
    assert c.send(b"BDAT 0 LAST\r\n")[0].startswith("250 2.6.0")
    assert c.handler.finished[0].body == b"ab\r\n"


def test_bdat_without_transaction_consumes_the_chunk_then_refuses():
    """The chunk is read (never run as commands), then 503; the session goes on."""
    c = Client()
    c.hello()
    assert c.send(b"BDAT 12 LAST\r\nQUIT\r\nNOOP\r\nNOOP\r\n") == ["503 5.5.2 Need mail command", "250 2.0.0 OK"]
    assert not c.transport.disconnecting


def test_bdat_bare_lf_and_cr_are_normalised_even_across_chunks():
    """A CR at the end of one chunk and the next chunk's first byte decide together; a CR at the very end is bare."""
    c = bdat_client()
    assert c.send(b"BDAT 4\r\na\nb\r") == ["250 2.0.0 4 octets received"]
    assert c.send(b"BDAT 5 LAST\r\n\nc\rd\r")[0].startswith("250 2.6.0")
    assert c.handler.finished[0].body == b"a\r\nb\r\nc\r\nd\r\n"


def test_bdat_bare_lf_refused_at_last_on_a_reject_connector():
    c = bdat_client("Strict", receive_connectors=STRICT)
    assert c.send(b"BDAT 8 LAST\r\na\nb\r\nc\r\n") == ["554 5.6.0 Invalid message content, contains bare linefeeds"]
    assert c.handler.finished == [] and c.handler.transactions[0].aborted


def test_data_after_bdat_is_a_sequence_error():
    c = bdat_client()
    c.send(b"BDAT 3\r\nab\n")
    assert c.send("DATA\r\n") == ["503 5.5.1 Bad sequence of commands: DATA after BDAT"]


def test_bdat_bad_syntax():
    c = bdat_client()
    assert c.send("BDAT ten LAST\r\n") == ["501 5.5.4 Invalid arguments"]


def test_bare_postmaster_is_accepted_for_the_primary_domain():
    """RFC 5321 4.5.1: RCPT TO:<Postmaster> without a domain is accepted, as postmaster of the first authoritative domain."""
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\n")
    assert c.send("RCPT TO:<Postmaster>\r\n") == ["250 2.1.5 Recipient OK"]
    assert str(c.handler.transactions[0].recipients[0]) == "postmaster@corp.example"


def test_granted_accept_any_recipient_lets_the_anonymous_relay_connector_relay():
    """The seed's Add-ADPermission step: anonymous clients on this connector may relay anywhere."""
    c = Client("Anon Relay", receive_connectors=[{
        "name": "Anon Relay", "role": "frontend", "bindings": ["127.0.0.1:25"], "remote_ip_ranges": ["192.0.2.0/24"],
        "permission_groups": ["AnonymousUsers"],
        "permissions": [{"user": "NT AUTHORITY\\ANONYMOUS LOGON", "extended_rights": ["ms-Exch-SMTP-Accept-Any-Recipient"]}],
    }])
    c.hello()
    c.send("MAIL FROM:<anyone@anywhere.example>\r\n")
    assert c.send("RCPT TO:<someone@outside.example>\r\n") == ["250 2.1.5 Recipient OK"]


def test_withheld_authoritative_sender_right_stops_internal_spoofing():
    """Remove-ADPermission of Accept-Authoritative-Domain-Sender: 550 5.7.1 for a spoofed internal sender."""
    c = Client("Default Frontend", receive_connectors=[{
        "name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["AnonymousUsers"],
        "permissions": [{"user": "anonymous", "extended_rights": ["ms-Exch-SMTP-Accept-Authoritative-Domain-Sender"], "deny": True}],
    }])
    c.hello()
    assert c.send("MAIL FROM:<ceo@corp.example>\r\n") == ["550 5.7.1 Client does not have permissions to send as this sender"]
    assert c.send("MAIL FROM:<printer@devices.example>\r\n") == ["250 2.1.0 Sender OK"]


def test_too_many_protocol_errors_closes_with_421():
    """MaxProtocolErrors (default 5): the sixth syntax error gets its reply, then 421 4.7.0 and the end."""
    c = Client()
    lines = c.send("BOGUS\r\n" * 5)
    assert lines == ["500 5.3.3 Unrecognized command"] * 5 and not c.transport.disconnecting
    assert c.send("BOGUS\r\nNOOP\r\n") == [
        "500 5.3.3 Unrecognized command",
        "421 4.7.0 Too many errors on this connection, closing transmission channel",
    ]
    assert c.transport.disconnecting


def test_policy_refusals_are_not_protocol_errors():
    """An app that addresses many outside recipients is refused each time, not disconnected."""
    c = Client()
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\n")
    assert c.send("RCPT TO:<x@outside.example>\r\n" * 8)[-1].startswith("550 5.7.54")
    assert not c.transport.disconnecting


def test_connection_timeout_ends_even_a_busy_session():
    """ConnectionTimeout (default 10 minutes) ends the session however active it is."""
    c = Client()
    for _ in range(11):
        c.clock.advance(59)
        c.send("NOOP\r\n")
    assert c.transport.disconnecting
    c2 = Client(receive_connectors=[{"name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:25"],
                                     "permission_groups": ["AnonymousUsers"], "connection_timeout": "30s"}])
    c2.clock.advance(29)
    c2.send("NOOP\r\n")
    c2.clock.advance(1)
    assert c2.read() == ["421 4.4.1 Connection timed out"] and c2.transport.disconnecting


def test_esmtp_toggles():
    """Disabled extensions are not offered and their parameters and commands are refused."""
    c = Client(receive_connectors=[{
        "name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["AnonymousUsers"],
        "pipelining_enabled": False, "eight_bit_mime_enabled": False, "size_enabled": False,
        "enhanced_status_codes_enabled": False, "chunking_enabled": False,
    }])
    # DSN has no switch (Exchange's DeliveryStatusNotificationEnabled is on by default and rarely turned off).
    assert c.send("EHLO x\r\n") == ["250-mail.corp.example Hello [192.0.2.1]", "250-DSN", "250-SMTPUTF8", "250 HELP"]
    assert c.send("MAIL FROM:<a@b.example> BODY=8BITMIME\r\n") == ["555 Unsupported parameter"]
    assert c.send("MAIL FROM:<a@b.example> SIZE=10\r\n") == ["555 Unsupported parameter"]
    assert c.send("MAIL FROM:<a@b.example>\r\n") == ["250 Sender OK"]
    assert c.send("RCPT TO:<alice@corp.example>\r\nBDAT 1 LAST\r\n") == ["250 Recipient OK", "500 Unrecognized command"]


def test_tarpit_delays_errors_to_anonymous_clients_and_keeps_order():
    """TarpitInterval (default 5 s): a 5xx to an unauthenticated client waits; pipelined commands wait behind it."""
    c = Client(tarpit=True)
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\n")
    assert c.send("RCPT TO:<x@outside.example>\r\nNOOP\r\n") == []
    c.clock.advance(4.9)
    assert c.read() == []
    c.clock.advance(0.1)
    assert c.read() == ["550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain", "250 2.0.0 OK"]


def test_no_tarpit_for_gateway_nodes():
    """A node that proved the node secret is not slowed down; before that it is any anonymous client."""
    c = Client(connector="Default", ip="127.0.0.1", tarpit=True)
    c.hello()
    assert c.send("BOGUS\r\n") == []
    c.clock.advance(5)
    assert c.read() == ["500 5.3.3 Unrecognized command"]
    c.send(testing.node_login(testing.node_credential()))
    assert c.send("BOGUS\r\n") == ["500 5.3.3 Unrecognized command"]


def test_header_section_over_max_header_size_is_refused():
    """MaxHeaderSize (default 256 KB): a header section over the connector's limit gets 552 5.3.4 at the end of data."""
    c = Client(receive_connectors=[{"name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:25"],
                                    "permission_groups": ["AnonymousUsers"], "max_header_size": 1000}])
    c.hello()
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    headers = "".join(f"X-Line-{i}: {'v' * 60}\r\n" for i in range(20))
    assert c.send(headers + "\r\nbody\r\n.\r\n") == ["552 5.3.4 Header size exceeds fixed maximum size"]
    assert c.handler.finished == []
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    assert c.send("Subject: short\r\n\r\n" + "long body line\r\n" * 200 + ".\r\n")[0].startswith("250 2.6.0")


def test_a_non_ascii_login_name_survives_the_xforward_hand_off():
    """The frontend xtext-encodes the login as UTF-8; the hub takes it back whole (issue 16 item 20), controls still refused."""
    from types import SimpleNamespace

    from gateway.proxy import xforward_line
    from gateway.smtpd.session import Origin

    origin = Origin("192.0.2.44", 5555, "printer01", "ESMTPSA", "EXSERVER\\Client Frontend", auth="jürgen.müller@corp.example")
    line = xforward_line(SimpleNamespace(origin=lambda: origin))
    assert "AUTH=j+C3+BCrgen.m+C3+BCller@corp.example" in line and line.isascii()
    c = Client(connector="Default", ip="127.0.0.1")
    c.hello()
    c.send(testing.node_login(testing.node_credential()))
    assert c.send(line + "\r\n") == ["250 2.0.0 Ok"]
    c.send("MAIL FROM:<a@b.example>\r\n")
    assert c.handler.transactions[0].session.origin() == origin
    c = Client(connector="Default", ip="127.0.0.1")
    c.hello()
    c.send(testing.node_login(testing.node_credential()))
    assert c.send("XFORWARD AUTH=j+C2+85rgen\r\n") == ["501 5.5.4 Invalid arguments"]  # U+0085, a C1 line break
    assert c.send("XFORWARD AUTH=a+E2+80+A8b\r\n") == ["501 5.5.4 Invalid arguments"]  # U+2028


def test_frontend_refuses_a_mail_loop_after_data():
    """The frontend counts Received: fields as they stream by: over max_hop_count is 554 5.4.6, and nothing is handed on."""
    c = Client(receive_connectors=[
        {"name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:2025"], "permission_groups": ["AnonymousUsers"],
         "max_hop_count": 3},
    ])
    c.hello()
    c.send("MAIL FROM:<a@ext.example>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n")
    body = "".join(f"Received: from h{i}\r\n" for i in range(4)) + "Subject: s\r\n\r\nx\r\n.\r\n"
    assert c.send(body) == ["554 5.4.6 Hop count exceeded - possible mail loop"]
    assert c.handler.finished == [] and c.handler.transactions[-1].aborted
    c.send("MAIL FROM:<a@ext.example>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n")
    assert c.send(body.split("\r\n", 1)[1])[0].startswith("250 ")


class NoDelayTransport(StringTransport):
    """A StringTransport that records TCP_NODELAY, as a TCP connection would set it."""

    no_delay = False

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


def test_replies_are_not_held_by_nagle():
    """Every reply is written whole: the connection sets TCP_NODELAY, so a second reply (a BDAT chunk's 250) never waits for the client's delayed ACK."""
    c = Client(transport=NoDelayTransport)
    assert c.transport.no_delay
