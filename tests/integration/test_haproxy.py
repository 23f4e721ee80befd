"""
A real HAProxy (TCP mode, send-proxy-v2, balance source) in front of two
gateway nodes: the client address behind the balancer still selects the
connector, counts toward per-source limits and appears in the logs.
"""

import smtplib
import socket
import subprocess

import pytest

from tests.integration.capture import CaptureServer
from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, anon_relay, exgateway_cli, free_port, wait_for_port

PROXIED = 'proxy_protocol = true\ntrusted_proxies = ["127.0.0.1"]\nmax_inbound_connection_per_source = 1\n'


def node(directory, sink_port: int) -> Gateway:
    gw = Gateway(directory)
    text = gw.config.read_text().replace("max_inbound_connection_per_source = 100\n", PROXIED)
    text = text.replace("[queue]", anon_relay(gw.frontend_port, "127.0.0.2", PROXIED) + f"""
[[send_connectors]]
name = "ISP"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{sink_port}"]

[queue]""")
    gw.config.write_text(text)
    return gw.start()


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    haproxy = require_tool("haproxy")
    directory = tmp_path_factory.mktemp("haproxy")
    hop = CaptureServer("127.0.0.1", free_port())
    nodes = [node(directory / f"node{i}", hop.port) for i in (1, 2)]
    lb_port = free_port()
    cfg = directory / "haproxy.cfg"
    cfg.write_text(f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend smtp
    bind 127.0.0.1:{lb_port}
    default_backend gateways
backend gateways
    balance source
    server node1 127.0.0.1:{nodes[0].frontend_port} send-proxy-v2
    server node2 127.0.0.1:{nodes[1].frontend_port} send-proxy-v2
""")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(lb_port, process=proc)
    yield lb_port, nodes, hop
    proc.terminate()
    proc.wait()
    for gw in nodes:
        gw.stop()
    hop.stop()


def client(lb_port: int, source: str) -> smtplib.SMTP:
    s = smtplib.SMTP(timeout=10, source_address=(source, 0))
    s.connect("127.0.0.1", lb_port)
    return s


def test_the_trusted_device_relays_through_the_balancer_and_others_do_not(balanced):
    lb_port, nodes, hop = balanced
    with client(lb_port, "127.0.0.2") as s:
        s.sendmail("printer@devices.example", ["someone@outside.example"], b"Subject: via haproxy\r\n\r\nscan\r\n")
    with client(lb_port, "127.0.0.3") as s:
        s.ehlo("laptop")
        s.mail("x@devices.example")
        assert s.rcpt("someone@outside.example") == (550, b"5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
    nodes[0].wait_until(lambda: hop.transactions, what="the relayed message")
    received = hop.transactions[0].data
    assert b"Received: from " in received and b"([127.0.0.2])" in received and b'(connector "EXSERVER\\\\Anon Relay")' in received
    # The logs of the nodes name the clients, not the balancer: the tracking log the
    # relayed device, the (Verbose) protocol log of Default Frontend the laptop.
    def logged():
        tracked = "".join(exgateway_cli(gw.config, "track", "--sender", "printer@devices.example", "--list").stdout for gw in nodes)
        protocol = "".join(p.read_text() for gw in nodes for p in (gw.var / "logs").rglob("RECV*.LOG"))
        return (tracked, protocol) if "client-ip                 : 127.0.0.2" in tracked and "+," in protocol else None

    _tracked, protocol = nodes[0].wait_until(logged, what="tracking and protocol logs")
    sessions = [line.split(",") for line in protocol.splitlines() if ",+," in line]
    # (127.0.0.1 is the fixture's own probe of the balancer's port, also passed through with its address.)
    assert "127.0.0.3" in [fields[5].rsplit(":", 1)[0] for fields in sessions]


def test_per_source_limits_count_each_client_behind_the_balancer(balanced):
    lb_port, _nodes, _hop = balanced
    first = client(lb_port, "127.0.0.4")
    other = client(lb_port, "127.0.0.5")
    try:
        raw = socket.create_connection(("127.0.0.1", lb_port), timeout=10, source_address=("127.0.0.4", 0))
        try:
            reply = raw.makefile("rb").readline()
        finally:
            raw.close()
        assert reply == b"421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel\r\n"
        assert first.noop()[0] == 250 and other.noop()[0] == 250
    finally:
        first.close()
        other.close()
