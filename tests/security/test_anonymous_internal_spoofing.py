"""
Issue 16 item 10: with the sample configuration anyone on port 25 could use
`MAIL FROM:<ceo@corp.example>`. Now only the organisation's networks keep
that right ([networks] internal); the rest of the world gets
`550 5.7.1 Client does not have permissions to send as this sender`.
Replayed against the shipped etc/exgateway.toml, with connector selection
as the listener does it.
"""

from ipaddress import ip_address

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.config import load_config
from gateway.connectors import select_connector
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.protocol import ESMTPServer

CANNOT_SEND_AS = "550 5.7.1 Client does not have permissions to send as this sender"


def session_on_25(client_ip: str):
    config = load_config()
    port_25 = [c for c in config.connectors("frontend") if any(b.port == 25 for b in c.bindings)]
    connector = select_connector(port_25, ip_address(client_ip))
    clock = Clock()
    clock.advance(1_795_000_000)
    handler = testing.FakeHandler()
    proto = ESMTPServer(connector, handler, SessionPolicy(AcceptedDomains(config.accepted_domains)), clock)
    address = IPv6Address if ":" in client_ip else IPv4Address
    transport = StringTransport(hostAddress=address("TCP", "::" if ":" in client_ip else "0.0.0.0", 25),
                                peerAddress=address("TCP", client_ip, 40000))
    proto.makeConnection(transport)

    def send(line: str) -> list[str]:
        transport.clear()
        proto.dataReceived(line.encode() + b"\r\n")
        clock.advance(connector.tarpit_interval)
        return transport.value().decode().split("\r\n")[:-1]

    return connector, send


@pytest.mark.parametrize("client_ip", ["203.0.113.5", "2001:db8::25", "100.64.0.1"])
def test_an_outsider_cannot_send_as_the_organisations_domain(client_ip):
    connector, send = session_on_25(client_ip)
    assert connector.name == "Default Frontend"
    send("EHLO spoofer.example")
    assert send("MAIL FROM:<ceo@corp.example>") == [CANNOT_SEND_AS]
    # An outside sender to an accepted domain is still ordinary inbound mail.
    assert send("MAIL FROM:<partner@outside.example>") == ["250 2.1.0 Sender OK"]
    assert send("RCPT TO:<ceo@corp.example>") == ["250 2.1.5 Recipient OK"]


@pytest.mark.parametrize("client_ip", ["10.20.5.9", "172.16.0.4", "192.168.1.20", "127.0.0.1", "fd00::9"])
def test_a_device_on_the_internal_networks_may(client_ip):
    connector, send = session_on_25(client_ip)
    assert connector.name == "Internal Frontend"
    send("EHLO printer")
    assert send("MAIL FROM:<scanner@corp.example>") == ["250 2.1.0 Sender OK"]
    assert send("RCPT TO:<someone@outside.example>") == ["550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"]


def test_receive_connector_test_tells_the_admin_the_same():
    from gateway.admin.explain import explain

    report = explain(load_config(), "203.0.113.5", 25, "ceo@corp.example", ("alice@corp.example",))
    assert any(line.endswith("<- chosen") and "\\Default Frontend " in line for line in report)
    assert f"  MAIL FROM:<ceo@corp.example>  ->  {CANNOT_SEND_AS}" in report
