"""
SMTP smuggling (CVE-2023-51764 class): a client hides a second transaction
behind a fake end of data that some next hop would honour. Bare line ends
are normalised (the default) or refused, and neither way does a fake end
end the message or run the commands behind it; what is passed on holds no
end-of-data sequence a next hop could honour.
"""

import pytest

from gateway.deliver.body import dot_stuff
from tests.smtpd.test_protocol import Client

FAKE_ENDS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\n", b"\n.\r"]
SMUGGLED = b"MAIL FROM:<ceo@corp.example>\r\nRCPT TO:<victim@corp.example>\r\nDATA\r\nSubject: wire the money\r\n\r\nnow\r\n"


def attack(mode: str, fake: bytes):
    c = Client("Target", receive_connectors=[{"name": "Target", "role": "frontend", "bindings": ["127.0.0.1:25"],
                                                "permission_groups": ["AnonymousUsers"], "bare_linefeeds": mode}])
    c.hello()
    c.send("MAIL FROM:<a@devices.example>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n")
    return c, c.send(b"Subject: hi\r\n\r\nx" + fake + SMUGGLED + b".\r\nQUIT\r\n")


@pytest.mark.parametrize("fake", FAKE_ENDS, ids=repr)
def test_normalised_the_fake_end_is_a_line_and_the_smuggled_commands_are_text(fake):
    c, lines = attack("normalize", fake)
    assert lines[0].startswith("250 2.6.0") and lines[1:] == ["221 2.0.0 Service closing transmission channel"]
    (txn,) = c.handler.transactions
    assert [str(r) for r in txn.recipients] == ["alice@corp.example"]
    assert c.handler.finished[0].body == b"Subject: hi\r\n\r\nx\r\n\r\n" + SMUGGLED
    # Relayed on, the body is CRLF lines, dot-stuffed: the only end a next hop sees is the real one.
    wire = dot_stuff(c.handler.finished[0].body, b"\r\n")[0] + b".\r\n"
    assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n")
    # No bare CR or LF left for a lenient next hop to read as a line end.
    assert wire.count(b"\n") == wire.count(b"\r") == wire.count(b"\r\n")


@pytest.mark.parametrize("fake", FAKE_ENDS, ids=repr)
def test_rejected_the_whole_message_is_refused_and_nothing_runs(fake):
    c, lines = attack("reject", fake)
    assert lines[0].startswith("554 5.6.0 Invalid message content, contains bare")
    assert lines[1:] == ["221 2.0.0 Service closing transmission channel"]
    assert c.handler.finished == [] and len(c.handler.transactions) == 1
