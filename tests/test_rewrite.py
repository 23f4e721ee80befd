"""Address rewriting ([[rewrite]]): envelope and header addresses, exact bytes otherwise, config errors named."""

import pytest

from gateway import testing
from gateway.address import Address
from gateway.config import ConfigError
from gateway.rewrite import Rewriter, parse_rule
from tests.test_intake import RECEIVED, Hub

RULES = (
    parse_rule({"match": "root@printer01.local", "to": "printer01@corp.example"}),
    parse_rule({"match": "*@*.corp.local", "to": "*@corp.example"}),
    parse_rule({"match": "*@old.example", "to": "*@corp.example", "direction": "inbound"}),
    parse_rule({"match": "*@legacy.example", "to": "*@corp.example", "direction": "both"}),
)


def test_most_specific_rule_wins_and_star_keeps_the_local_part():
    """An exact address beats a wildcard domain; `*@corp.example` keeps the local part; other addresses stay."""
    r = Rewriter(RULES)
    assert r.sender(Address("root", "printer01.local")) == Address("printer01", "corp.example")
    assert r.sender(Address("ROOT", "printer01.local")) == Address("printer01", "corp.example")
    assert r.sender(Address("scan", "floor2.corp.local")) == Address("scan", "corp.example")
    assert r.sender(Address("scan", "a.b.corp.local")) == Address("scan", "corp.example")
    assert r.sender(Address("scan", "corp.local")) == Address("scan", "corp.local")
    assert r.sender(Address("x", "elsewhere.example")) == Address("x", "elsewhere.example")
    assert r.sender(Address("", "")) == Address("", "")


def test_direction_decides_the_side():
    """outbound: sender side only; inbound: recipient side only; both: both."""
    r = Rewriter(RULES)
    assert r.sender(Address("a", "old.example")) == Address("a", "old.example")
    assert r.recipient(Address("a", "old.example")) == Address("a", "corp.example")
    assert r.recipient(Address("root", "printer01.local")) == Address("root", "printer01.local")
    assert r.sender(Address("a", "legacy.example")) == Address("a", "corp.example")
    assert r.recipient(Address("a", "legacy.example")) == Address("a", "corp.example")


def test_header_rewrites_only_addresses_in_the_right_fields():
    """Display names, quoted strings, comments, folding, other fields: byte for byte unchanged."""
    header = (
        b'From: "root@printer01.local (Printer)" <root@printer01.local> (root@printer01.local)\r\n'
        b"To: Alice <a@old.example>,\r\n\t root@printer01.local\r\n"
        b"Cc: b@old.example\r\n"
        b"Reply-To:scan@floor2.corp.local\r\n"
        b"Subject: mail from root@printer01.local\r\n"
        b"X-Origin: root@printer01.local\r\n"
    )
    assert Rewriter(RULES).header(header) == (
        b'From: "root@printer01.local (Printer)" <printer01@corp.example> (root@printer01.local)\r\n'
        b"To: Alice <a@corp.example>,\r\n\t root@printer01.local\r\n"
        b"Cc: b@corp.example\r\n"
        b"Reply-To:scan@corp.example\r\n"
        b"Subject: mail from root@printer01.local\r\n"
        b"X-Origin: root@printer01.local\r\n"
    )


@pytest.mark.parametrize("rule, reason", [
    ({"match": "root", "to": "a@corp.example"}, "is not local@domain"),
    ({"match": "*@*.corp.local", "to": "*@*.corp.example"}, "is not a domain (the target has no wildcard domain)"),
    ({"match": "a b@x.example", "to": "a@corp.example"}, "is not a local part or *"),
    ({"match": "a@x.example", "to": "a@corp.example", "direction": "sideways"}, "is not one of outbound, inbound, both"),
])
def test_bad_rules_are_named(rule, reason):
    with pytest.raises(ConfigError) as e:
        testing.config(rewrite=[rule])
    (problem,) = e.value.problems
    assert problem.key == "rewrite[0]" and reason in problem.reason


def test_unknown_key_in_a_rule_is_named():
    with pytest.raises(ConfigError) as e:
        testing.config(rewrite=[{"match": "a@b.example", "to": "a@corp.example", "directon": "inbound"}])
    assert [p.key for p in e.value.problems] == ["rewrite[0].directon"]


def test_hub_intake_rewrites_envelope_and_headers_and_nothing_else(tmp_path):
    """The queued envelope and file: sender, recipient, From and To rewritten; every other byte as sent."""
    hub = Hub(tmp_path)
    hub.handler.configure(testing.config(
        accepted_domains=[{"domain": "corp.example"}, {"domain": "old.example"}],
        rewrite=[
            {"match": "root@printer01.local", "to": "printer01@corp.example"},
            {"match": "*@old.example", "to": "*@corp.example", "direction": "inbound"},
        ],
    ))
    body = (
        b"From: Printer 1 <root@printer01.local>\r\nTo: <alice@old.example>\r\nMessage-ID: <m1@printer01.local>\r\n"
        b"Date: Tue, 17 Nov 2026 10:00:00 +0000\r\nSubject: toner  \r\n\r\nroot@printer01.local says: \xe9\r\n"
    )
    lines = hub.send(
        b"EHLO fe.corp.example\r\nXFORWARD ADDR=192.0.2.7 PORT=4000 HELO=scanner3 PROTO=ESMTP CONNECTOR=EXSERVER\\Default+20Frontend\r\n"
        b"MAIL FROM:<root@printer01.local>\r\nRCPT TO:<alice@old.example>\r\nDATA\r\n" + body + b".\r\n"
    )
    assert lines[-1].startswith("250 2.6.0 <m1@printer01.local>")
    (env,) = hub.scheduler.queued
    assert env.sender == "printer01@corp.example"
    assert [r.address for r in env.recipients] == ["alice@corp.example"]
    assert hub.stored() == RECEIVED.format(id=env.internal_id).encode() + body.replace(
        b"<root@printer01.local>\r\nTo: <alice@old.example>", b"<printer01@corp.example>\r\nTo: <alice@corp.example>"
    )


def test_no_rules_leave_the_message_alone(tmp_path):
    """Without [[rewrite]] the sender and the bytes are as sent (the default config)."""
    hub = Hub(tmp_path)
    hub.handler.configure(testing.config())
    body = b"From: root@printer01.local\r\n\r\nx\r\n"
    hub.send(b"EHLO fe\r\nMAIL FROM:<root@printer01.local>\r\nRCPT TO:<alice@corp.example>\r\nDATA\r\n" + body + b".\r\n")
    (env,) = hub.scheduler.queued
    assert env.sender == "root@printer01.local"
    assert hub.stored().endswith(body)


def test_a_reload_gives_the_intake_the_new_rules(tmp_path):
    """LiveConfig hands each applied config to the intake (configure): new rules for the next message; a refused file changes nothing."""
    from gateway.config import load_config
    from gateway.reload import LiveConfig
    from tests.test_reload import BASE

    class Intake:
        def configure(self, config):
            self.rewriter = Rewriter(config.rewrite)

    path = tmp_path / "gw.toml"
    path.write_text(BASE)
    live = LiveConfig(load_config(path), path, ("frontend",))
    intake = Intake()
    live.follow_routes(intake)
    assert not intake.rewriter
    path.write_text(BASE + '[[rewrite]]\nmatch = "root@printer01.local"\nto = "printer01@corp.example"\n')
    assert live.reload()
    assert intake.rewriter.sender(Address("root", "printer01.local")) == Address("printer01", "corp.example")
    path.write_text(BASE + '[[rewrite]]\nmatch = "root"\nto = "x@corp.example"\n')
    assert not live.reload()
    assert intake.rewriter.sender(Address("root", "printer01.local")) == Address("printer01", "corp.example")
