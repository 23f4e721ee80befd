"""
Property-based: whatever a next hop (or a hub) answers, the delivery
client's reply reader (gateway/deliver/replies.py) turns it into replies or a
dropped connection, never an exception out of dataReceived; parse_reply
takes every reply the reader can hand it.
"""

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway.deliver.client import SMTPClient, parse_reply
from tests.fuzz.test_fuzz_smtp_session import no_unexpected_errors

digits = st.text(alphabet="0123456789", min_size=3, max_size=3)
reply_lines = st.builds(lambda code, sep, text: (code + sep).encode() + text, digits, st.sampled_from(["", " ", "-", "x"]),
                        st.binary(max_size=60))


@given(st.lists(reply_lines, min_size=1, max_size=5))
@example([b"250-mail.example", b"250 2.0.0 \xff\xfe ok"])
@example([b"000"])
def test_parse_reply_takes_any_reply_the_reader_passes(lines):
    reply = parse_reply(lines)
    assert reply.code == int(lines[0][:3])
    assert reply.enhanced == "" or reply.enhanced[0] in "245"


def _client():
    client = SMTPClient("out.corp.example", Clock(), timeout=30, peer_name="next.hop.example")
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.25", 25))
    client.makeConnection(transport)
    client.ready.addErrback(lambda f: None)
    return client, transport


stream = st.lists(st.one_of(
    st.builds(lambda line: line + b"\r\n", reply_lines),
    st.sampled_from([b"220 hi\r\n", b"250-PIPELINING\r\n250-SIZE 10\r\n250 CHUNKING\r\n", b"220-", b"\r\n", b"\n", b"abc\r\n"]),
    st.binary(max_size=40),
), max_size=10)


@given(stream)
@example([b"220-x\r\n" * 150])
@example([b"2" * 5000])
def test_any_bytes_from_a_next_hop_never_raise_out_of_the_client(chunks):
    with no_unexpected_errors():
        client, transport = _client()
        for chunk in chunks:
            if transport.disconnecting:
                break
            client.dataReceived(chunk)
