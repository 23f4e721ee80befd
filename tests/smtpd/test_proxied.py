"""A listener behind a balancer: PROXY header first, then the session of the real client."""

import dataclasses

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.factory import BindingFactory
from gateway.smtpd.proxied import HEADER_TIMEOUT
from gateway.smtpd.proxyproto import v1_header, v2_header

PROXY = {"proxy_protocol": True, "trusted_proxies": ["10.0.0.5"], "tarpit_interval": "0s"}
CFG = testing.config(receive_connectors=[
    {"name": "Default Frontend", "role": "frontend", "bindings": ["0.0.0.0:25"], "permission_groups": ["AnonymousUsers"], **PROXY},
    {"name": "Anon Relay", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["192.0.2.10"],
     "permission_groups": ["AnonymousUsers"], **PROXY,
     "permissions": [{"user": "NT AUTHORITY\\ANONYMOUS LOGON", "extended_rights": ["ms-Exch-SMTP-Accept-Any-Recipient"]}]},
    {"name": "Default", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["127.0.0.0/8"],
     "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]},
])


def listener(per_source=None):
    clock = Clock()
    connectors = tuple(c for c in CFG.receive_connectors if c.role == "frontend")
    if per_source is not None:
        connectors = tuple(dataclasses.replace(c, max_inbound_connection_per_source=per_source) for c in connectors)
    factory = BindingFactory(connectors[0].bindings[0], "frontend", connectors, testing.FakeHandler(),
                             SessionPolicy(AcceptedDomains(CFG.accepted_domains)), clock)
    return factory, clock


def connect(factory, peer="10.0.0.5"):
    proto = factory.buildProtocol(IPv4Address("TCP", peer, 40000))
    transport = StringTransport(hostAddress=IPv4Address("TCP", "10.0.0.1", 25), peerAddress=IPv4Address("TCP", peer, 40000))
    proto.makeConnection(transport)
    return proto, transport


def test_no_banner_before_the_header_then_the_real_client_selects_the_connector():
    factory, _clock = listener()
    proto, t = connect(factory)
    assert t.value() == b""
    proto.dataReceived(v2_header(("192.0.2.10", 51000), ("198.51.100.1", 25)) + b"EHLO printer\r\n")
    lines = t.value().decode().split("\r\n")
    assert lines[0].startswith("220 ") and lines[1] == "250-mail.corp.example Hello [192.0.2.10]"
    session = proto.inner.session
    assert (session.client_ip, session.client_port, session.connector.name) == ("192.0.2.10", 51000, "Anon Relay")
    assert (session.server_ip, session.server_port) == ("198.51.100.1", 25)


def test_v1_header_split_across_packets():
    factory, _ = listener()
    proto, t = connect(factory)
    header = v1_header(("203.0.113.9", 4000), ("198.51.100.1", 25))
    proto.dataReceived(header[:10])
    assert t.value() == b""
    proto.dataReceived(header[10:])
    assert proto.inner.session.client_ip == "203.0.113.9" and proto.inner.session.connector.name == "Default Frontend"


def test_a_local_header_keeps_the_balancers_own_address():
    factory, _ = listener()
    proto, _t = connect(factory)
    proto.dataReceived(v2_header(None, None))
    assert proto.inner.session.client_ip == "10.0.0.5"


def test_untrusted_source_bad_header_and_slow_header_are_refused():
    factory, clock = listener()
    _, t = connect(factory, peer="10.0.0.6")
    assert t.value() == b"421 4.3.2 Service not available\r\n" and t.disconnecting
    proto, t = connect(factory)
    proto.dataReceived(b"EHLO sneaky\r\n")
    assert t.value() == b"" and t.disconnecting and proto.inner is None
    proto, t = connect(factory)
    proto.dataReceived(b"PROXY TCP4 192.0.2.10")
    clock.advance(HEADER_TIMEOUT)
    assert t.value() == b"" and t.disconnecting and proto.inner is None


def test_per_source_limits_count_the_real_clients_not_the_balancer():
    factory, _ = listener(per_source=1)
    a, ta = connect(factory)
    a.dataReceived(v1_header(("203.0.113.1", 1), ("198.51.100.1", 25)))
    b, tb = connect(factory)
    b.dataReceived(v1_header(("203.0.113.2", 1), ("198.51.100.1", 25)))
    c, tc = connect(factory)
    c.dataReceived(v1_header(("203.0.113.1", 2), ("198.51.100.1", 25)))
    assert ta.value().startswith(b"220 ") and tb.value().startswith(b"220 ")
    assert tc.value() == b"421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel\r\n"
