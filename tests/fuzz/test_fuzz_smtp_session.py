"""
Property-based: whatever a client sends, the ESMTP server answers with
well-formed replies, never lets an exception escape (nor logs one as
unexpected), and an anonymous client never gets a recipient outside the
accepted domains past RCPT. DATA and BDAT bodies arrive byte for byte
however the stream is split.
"""

import itertools
import re
from contextlib import contextmanager

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.smtpd.xtext import encode as xtext_encode
from tests.fuzz.strategies import addresses, parameters, tricky_text
from tests.smtpd.test_protocol import Client

REPLY = re.compile(r"^[2-5]\d\d[ -]")
ACCEPTED = AcceptedDomains(testing.config().accepted_domains)
VERBS = ["EHLO", "HELO", "MAIL FROM:", "RCPT TO:", "DATA", "BDAT", "RSET", "NOOP", "VRFY", "HELP", "STARTTLS", "AUTH",
         "XFORWARD", "QUIT", "mail from:", "RCPT TO: ", "EHLO  "]


@contextmanager
def no_unexpected_errors():
    """Collects every logged failure: a parser error must become a reply, never a traceback."""
    failures = []

    def observer(event):
        if "log_failure" in event:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observer)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == [], [f.getTraceback() for f in failures]


def well_formed(lines):
    assert all(REPLY.match(line) for line in lines), lines


command_lines = st.one_of(
    st.builds(lambda v, a: (v + a).encode("utf-8", "surrogatepass"), st.sampled_from(VERBS), tricky_text(60)),
    st.builds(lambda a, p: f"MAIL FROM:<{a}> {p}".encode("utf-8", "surrogatepass"), addresses(), parameters),
    st.builds(lambda a, p: f"RCPT TO:<{a}> {p}".encode("utf-8", "surrogatepass"), addresses(), parameters),
    st.binary(max_size=80),
)


@given(st.lists(command_lines, max_size=12), st.sampled_from([b"\r\n", b"\n"]))
@example([b"MAIL FROM:<a@b.example> SIZE=99999999999999999999999"], b"\r\n")
@example([b"RCPT TO:<\"\\\xff\"@corp.example>"], b"\r\n")
def test_any_command_lines_get_well_formed_replies_and_no_traceback(lines, ending):
    with no_unexpected_errors():
        c = Client()
        c.hello()
        for line in lines:
            if c.transport.disconnecting:
                break
            well_formed(c.send(line.replace(b"\r", b"").replace(b"\n", b"") + ending))


@given(st.lists(addresses(), min_size=1, max_size=6), st.sampled_from(["app@corp.example", "", "x@outside.example"]))
@example(["bob@corp.example.evil.example"], "")
@example(['"bob@evil.example"@corp.example', "bob%evil.example@corp.example", "@corp.example:bob@evil.example"], "")
def test_an_anonymous_client_never_gets_a_recipient_outside_the_accepted_domains(recipients, sender):
    """The relay rule, whatever the address looks like: what passes RCPT is in an accepted domain and routes there."""
    with no_unexpected_errors():
        c = Client()
        c.hello()
        c.send(f"MAIL FROM:<{sender}>\r\n".encode("utf-8", "surrogatepass"))
        for r in recipients:
            c.send(f"RCPT TO:<{r}>\r\n".encode("utf-8", "surrogatepass"))
        for txn in c.handler.transactions:
            for rcpt in txn.recipients:
                assert rcpt.domain in ACCEPTED and not rcpt.literal, (rcpt, recipients)
                assert not rcpt.has_routing_characters, rcpt


bodies = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n"))


@given(bodies, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
@example(b".\r\n..\r\n.x\r\n", [1, 2, 3, 4, 5])
@example(b"a\r\n", [0])
def test_a_data_body_arrives_exactly_however_the_stream_is_split(body, cuts):
    """Dot-stuffed on the wire, split anywhere (even inside CRLF.CRLF): the transaction gets the body back byte for byte."""
    wire = b"\r\n".join((b"." + line if line.startswith(b".") else line) for line in body.split(b"\r\n"))
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    wire += b".\r\n"
    expected = body if body.endswith(b"\r\n") else body + b"\r\n"
    if body == b"":
        expected = b"\r\n"
    with no_unexpected_errors():
        c = Client()
        c.hello()
        c.send("MAIL FROM:<app@corp.example>\r\nRCPT TO:<bob@corp.example>\r\nDATA\r\n")
        points = sorted({0, len(wire), *(p for p in cuts if p < len(wire))})
        replies = []
        for a, b in itertools.pairwise(points):
            replies += c.send(wire[a:b])
        assert replies[-1].startswith("250 ")
        (txn,) = c.handler.finished
        assert txn.body == expected


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=4), st.lists(st.integers(min_value=0, max_value=900), max_size=6))
@example([b"\r\n.\r\n", b"BDAT 5\r\n"], [3])
def test_bdat_chunks_arrive_verbatim_however_the_stream_is_split(chunks, cuts):
    """BDAT is length-framed: any bytes, CRLF.CRLF and command look-alikes included, are body (bare LF aside)."""
    chunks = [c.replace(b"\r", b"").replace(b"\n", b"\r\n") for c in chunks]
    wire = b"".join(b"BDAT %d%s\r\n%s" % (len(c), b" LAST" if i == len(chunks) - 1 else b"", c) for i, c in enumerate(chunks))
    with no_unexpected_errors():
        c = Client()
        c.hello()
        c.send("MAIL FROM:<app@corp.example>\r\nRCPT TO:<bob@corp.example>\r\n")
        points = sorted({0, len(wire), *(p for p in cuts if p < len(wire))})
        replies = []
        for a, b in itertools.pairwise(points):
            replies += c.send(wire[a:b])
        well_formed(replies)
        assert replies[-1].startswith("250 ")
        (txn,) = c.handler.finished
        assert txn.body == b"".join(chunks)


@given(st.lists(st.tuples(st.sampled_from(["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE", "CONNECTOR", "AUTH", "TLS", "X"]),
                          st.text(max_size=30)), max_size=5),
       st.booleans())
@example([("AUTH", "jürgen"), ("HELO", "a\r\nX-Injected: yes")], True)
def test_xforward_values_round_trip_or_are_refused_and_never_carry_line_breaks(attrs, encode):
    """A hub takes XFORWARD from other nodes: what it keeps is what was sent (xtext round trip), and never a control character."""
    line = "XFORWARD " + " ".join(f"{k}={xtext_encode(v) if encode else v}" for k, v in attrs)
    with no_unexpected_errors():
        c = Client(connector="Default", ip="127.0.0.1")
        c.hello()
        replies = c.send(line.encode("utf-8", "surrogatepass") + b"\r\n")
        well_formed(replies)
        c.send("MAIL FROM:<a@b.example>\r\n")
        if not c.handler.transactions:
            return
        origin = c.handler.transactions[0].session.origin()
        for value in (origin.helo, origin.auth, origin.connector, origin.tls, origin.proto, origin.client_ip):
            assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", value), value
        if replies == ["250 2.0.0 Ok"] and encode:
            sent = {k: v for k, v in attrs if v not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]")}
            if "AUTH" in sent:
                assert origin.auth == sent["AUTH"]
            if "HELO" in sent:
                assert origin.helo == sent["HELO"]
