"""
Attack: use an inbound [[rewrite]] rule as an open relay. The frontend's
relay check (check_rcpt) sees RCPT TO as the client gave it; the hub's
intake rewrites it afterwards and does not check again. With
`*@corp.example -> *@partner.example, inbound` and a `*` send connector, an
anonymous client's RCPT TO:<anything@corp.example> (an accepted domain, so
250) left for partner.example: anyone could send to partner.example through
us. Now the config check refuses an inbound (or both) rule whose target is
not an accepted domain, and intake keeps the address the frontend accepted
if such a rule reaches it anyway.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from gateway import testing
from gateway.admin.cli import main
from gateway.config import SendConnector
from gateway.domains import AcceptedDomains
from gateway.nexthop import MAILBOX
from gateway.policy.checks import SessionPolicy
from gateway.rewrite import Rewriter, parse_rule
from gateway.route.router import Router
from gateway.smtpd.protocol import ESMTPServer
from tests.test_intake import Hub

CONFIG = """
[server]
fqdn = "mail.corp.example"
var_dir = "{var}"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Default Frontend"
role = "frontend"
bindings = ["127.0.0.1:2025"]
permission_groups = ["AnonymousUsers"]
[hub_pool]
hosts = ["127.0.0.1:2525"]
[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
[[rewrite]]
match = "*@corp.example"
to = "*@{target}"
direction = "{direction}"
"""

RELAY_RULE = parse_rule({"match": "*@corp.example", "to": "*@partner.example", "direction": "inbound"})


def _check(tmp_path, capsys, target, direction):
    path = tmp_path / "exgateway.toml"
    path.write_text(CONFIG.format(var=tmp_path / "var", target=target, direction=direction))
    code = main(["config", "check", str(path)])
    return path, code, capsys.readouterr()


def test_config_check_refuses_an_inbound_rule_into_an_outside_domain(tmp_path, capsys):
    for direction in ("inbound", "both"):
        path, code, out = _check(tmp_path, capsys, "partner.example", direction)
        assert code == 1
        assert out.err.splitlines() == [
            f"{path}: 1 error(s)",
            (f"  {path}: rewrite[0].to: 'partner.example' is not an accepted domain: a direction = \"{direction}\" rule rewrites "
             "recipients after the relay check, so its target must be an accepted domain (else it is an open relay)"),
        ]


def test_config_check_accepts_an_inbound_rule_into_an_accepted_domain_and_an_outbound_one_anywhere(tmp_path, capsys):
    _, code, out = _check(tmp_path, capsys, "corp.example", "inbound")
    assert code == 0, out.err
    # Outbound rules rewrite the sender, which the relay check does not decide on.
    _, code, out = _check(tmp_path, capsys, "partner.example", "outbound")
    assert code == 0, out.err


def test_the_frontend_accepts_the_rcpt_so_the_hub_must_not_rewrite_it_outside(tmp_path):
    """The whole path: anonymous RCPT on the frontend is 250 (accepted domain); the hub queues it for corp.example, not partner.example."""
    cfg = testing.config()
    domains = AcceptedDomains(cfg.accepted_domains)
    frontend = next(c for c in cfg.receive_connectors if c.role == "frontend")
    fe = ESMTPServer(frontend, testing.FakeHandler(), SessionPolicy(domains), Clock())
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 2025), peerAddress=IPv4Address("TCP", "198.51.100.9", 40000))
    fe.makeConnection(transport)
    transport.clear()
    fe.dataReceived(b"EHLO attacker.example\r\nMAIL FROM:<x@attacker.example>\r\nRCPT TO:<anything@corp.example>\r\n")
    assert transport.value().decode().split("\r\n")[-2] == "250 2.1.5 Recipient OK"

    # A rule that bypassed the config check (the check above refuses it) reaches the hub's intake.
    hub = Hub(tmp_path)
    hub.handler.router = Router(domains, (SendConnector(name="Internet", address_spaces=("*",), smart_hosts=()),))
    hub.handler.rewriter = Rewriter((RELAY_RULE,))
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        lines = hub.send(
            b"EHLO fe.corp.example\r\nXFORWARD ADDR=198.51.100.9 PORT=40000 HELO=attacker.example PROTO=ESMTP\r\n"
            b"MAIL FROM:<x@attacker.example>\r\nRCPT TO:<anything@corp.example>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\n"
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert lines[-1].startswith("250 2.6.0")
    (env,) = hub.scheduler.queued
    assert [r.address for r in env.recipients] == ["anything@corp.example"]
    assert hub.handler.router.route_address("anything@corp.example") is MAILBOX
    assert any(e.get("log_format", "").startswith("rewrite: not rewriting") and e["recipient"] == "anything@corp.example"
               and e["rewritten"] == "anything@partner.example" for e in events)
