"""Exchange-format protocol logs: header, fields, quoting, sequence, rotation."""

import csv

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.logs.protocol import ProtocolLog, csv_field
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.protocol import ESMTPServer

NOW = 1_795_000_000.25  # 2026-11-18T11:06:40.250Z


def rows(path):
    lines = path.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    data = list(csv.reader(line for line in lines if not line.startswith("#")))
    return header, data


def test_quoting_only_when_needed():
    assert csv_field("EHLO x") == "EHLO x"
    assert csv_field('250 a, "b"') == '"250 a, ""b"""'
    assert csv_field(" lead") == '" lead"'


def test_header_and_rotation_by_hour_and_size(tmp_path):
    clock = Clock()
    clock.advance(NOW)
    plog = ProtocolLog(tmp_path, "RECV", clock, max_file_size=400)
    plog.write("EXSERVER\\Default Frontend", "ABC", 0, "127.0.0.1:25", "192.0.2.1:4000", "+")
    plog.flush()
    (first,) = list(tmp_path.iterdir())
    assert first.name == "RECV2026111811-1.LOG"
    header, data = rows(first)
    assert header == [
        "#Software: exgateway",
        "#Version: 0.1.0",
        "#Log-type: SMTP Receive Protocol Log",
        "#Date: 2026-11-18T11:06:40.250Z",
        "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context",
    ]
    assert data == [["2026-11-18T11:06:40.250Z", "EXSERVER\\Default Frontend", "ABC", "0", "127.0.0.1:25", "192.0.2.1:4000", "+", "", ""]]
    plog.write("C", "ABC", 1, "l", "r", ">", "x" * 300)  # over 400 bytes with the header: a new file this hour
    clock.advance(3600)
    plog.write("C", "ABC", 2, "l", "r", "-", "", "Local")
    plog.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RECV2026111811-1.LOG", "RECV2026111811-2.LOG", "RECV2026111812-1.LOG"]


def test_lines_are_made_at_the_flush_with_the_time_of_their_event(tmp_path):
    """Events are buffered as values: the flush formats them, each stamped when it happened, and empties the buffer."""
    from gateway.logs.protocol import SessionLog

    clock = Clock()
    clock.advance(NOW)
    plog = ProtocolLog(tmp_path, "RECV", clock)
    session = SessionLog(plog, "C", "ABC", "127.0.0.1:25", "192.0.2.1:4000")
    session.event("<", "EHLO x")
    clock.advance(0.5)
    session.events(">", ("250-mail.corp.example Hello", "250 HELP"))
    assert list(tmp_path.iterdir()) == []
    clock.advance(2)
    plog.flush()
    plog.flush()
    _, data = rows(next(tmp_path.iterdir()))
    assert [(r[0], r[3], r[6], r[7]) for r in data] == [
        ("2026-11-18T11:06:40.250Z", "0", "<", "EHLO x"),
        ("2026-11-18T11:06:40.750Z", "1", ">", "250-mail.corp.example Hello"),
        ("2026-11-18T11:06:40.750Z", "2", ">", "250 HELP"),
    ]


def test_verbose_connector_logs_the_session(tmp_path):
    """+, Set Session Permissions, every line each way, and - at the end; sequence numbers from 0."""
    cfg = testing.config(receive_connectors=[{
        "name": "Default Frontend", "role": "frontend", "bindings": ["127.0.0.1:25"], "permission_groups": ["AnonymousUsers"],
        "protocol_logging_level": "Verbose",
    }])
    clock = Clock()
    clock.advance(NOW)
    plog = ProtocolLog(tmp_path, "RECV", clock)
    proto = ESMTPServer(cfg.receive_connectors[0], testing.FakeHandler(), SessionPolicy(AcceptedDomains(cfg.accepted_domains)), clock, None, plog)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", "192.0.2.9", 5000))
    proto.makeConnection(transport)
    proto.dataReceived(b"EHLO dev,inc\r\nQUIT\r\n")
    proto.connectionLost(None)
    plog.close()
    (path,) = list(tmp_path.iterdir())
    _, data = rows(path)
    session = proto.session.session_id
    assert {tuple(r[1:3]) for r in data} == {("EXSERVER\\Default Frontend", session)}
    assert [int(r[3]) for r in data] == list(range(len(data)))
    assert all(r[4:6] == ["127.0.0.1:25", "192.0.2.9:5000"] for r in data)
    events = [(r[6], r[7], r[8]) for r in data]
    assert events[0] == ("+", "", "")
    assert events[1] == (
        "*", "AcceptHeadersRouting SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender SMTPSubmit", "Set Session Permissions"
    )
    assert events[2][0] == ">" and events[2][1].startswith("220 mail.corp.example exgateway ESMTP MAIL Service ready at ")
    assert ("<", "EHLO dev,inc", "") in events  # quoted in the file, read back whole
    assert (">", "250-mail.corp.example Hello [192.0.2.9]", "") in events
    assert events[-3:] == [("<", "QUIT", ""), (">", "221 2.0.0 Service closing transmission channel", ""), ("-", "", "Local")]


def test_connector_without_verbose_writes_nothing(tmp_path):
    cfg = testing.config()
    clock = Clock()
    plog = ProtocolLog(tmp_path, "RECV", clock)
    proto = ESMTPServer(cfg.receive_connectors[0], testing.FakeHandler(), SessionPolicy(AcceptedDomains(cfg.accepted_domains)), clock, None, plog)
    proto.makeConnection(StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", "192.0.2.9", 5000)))
    proto.dataReceived(b"QUIT\r\n")
    plog.close()
    assert list(tmp_path.iterdir()) == []


def test_client_connection_writes_a_send_log(tmp_path):
    """The frontend's hand-off to the hub as an SMTP Send Protocol Log: commands out, replies in."""
    import io

    from gateway.deliver.client import SMTPClient

    clock = Clock()
    clock.advance(NOW)
    plog = ProtocolLog(tmp_path, "SEND", clock)
    client = SMTPClient("fe.corp.example", clock, 30, plog, "Hub Pool")
    client.makeConnection(StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 40000), peerAddress=IPv4Address("TCP", "127.0.0.1", 2525)))
    client.dataReceived(b"220 hub ready\r\n250-hub\r\n250 CHUNKING\r\n")
    client.command("MAIL FROM:<a@b.example>")
    client.dataReceived(b"250 2.1.0 Sender OK\r\n")
    client.send_bdat(io.BytesIO(b"body\r\n"), 6)
    client.dataReceived(b"250 2.6.0 queued\r\n")
    client.connectionLost(None)
    plog.close()
    (path,) = list(tmp_path.iterdir())
    header, data = rows(path)
    assert path.name.startswith("SEND") and header[2] == "#Log-type: SMTP Send Protocol Log"
    assert next((r[1], r[4], r[5]) for r in data) == ("Hub Pool", "127.0.0.1:40000", "127.0.0.1:2525")
    assert [(r[6], r[7]) for r in data] == [
        ("+", ""),
        ("<", "220 hub ready"),
        (">", "EHLO fe.corp.example"),
        ("<", "250-hub"),
        ("<", "250 CHUNKING"),
        (">", "MAIL FROM:<a@b.example>"),
        ("<", "250 2.1.0 Sender OK"),
        (">", "BDAT 6 LAST"),
        ("<", "250 2.6.0 queued"),
        ("-", ""),
    ]
