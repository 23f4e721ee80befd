"""
DKIM end to end: `exgateway dkim new-key` prints a record, a real DNS
server on loopback (twisted.names, tests/integration/dnsserver.py) serves
it, the gateway signs a message on its way to a smart host, and dkimpy
verifies what the smart host received by asking that server.
"""

import re
import smtplib

import dkim
import dns.resolver

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import Gateway, anon_relay, exgateway_cli, free_port
from tests.integration.test_mx import start_dns


def test_signature_verifies_against_the_published_record(tmp_path):
    capture = CaptureServer("127.0.0.1", free_port())
    gw = Gateway(tmp_path / "gw")
    out = exgateway_cli(gw.config, "dkim", "new-key", "--domain", "corp.example", "--selector", "s202612")
    assert out.returncode == 0, out.stderr
    # The record as an admin would paste it into the zone: name, then the quoted strings.
    name, strings = re.search(r"^(\S+)\. IN TXT \( (.*) \)$", out.stdout, re.MULTILINE).groups()
    assert name == "s202612._domainkey.corp.example"
    dns_proc, dns_port = start_dns(tmp_path, {name: {"TXT": [re.findall(r'"([^"]*)"', strings)]}})
    try:
        check(tmp_path, gw, capture, dns_port)
    finally:
        dns_proc.terminate()
        dns_proc.wait()


def check(tmp_path, gw, capture, dns_port):
    gw.add_config(anon_relay(gw.frontend_port, "127.0.0.2") + f"""
[[send_connectors]]
name = "ISP"
address_spaces = ["outside.example"]
smart_hosts = ["127.0.0.1:{capture.port}"]

[dkim]
selectors = {{ "corp.example" = "s202612" }}
""")
    gw.start()
    message = (
        b"From: Scanner <scan@corp.example>\r\nTo: <partner@outside.example>\r\nSubject: scan   42\r\n\r\n"
        b"Page 1\t of 2\r\n\r\n.leading dot\r\n"
    )
    try:
        with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.connect("127.0.0.1", gw.frontend_port)
            s.sendmail("scan@corp.example", ["partner@outside.example", "alice@corp.example"], message)
        (txn,) = gw.wait_until(lambda: capture.transactions, what="the message at the smart host")
        (local,) = gw.wait_until(lambda: gw.mailbox("alice@corp.example"), what="the mailbox copy")
    finally:
        gw.stop()
        capture.stop()
    received = txn.data
    assert received.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=corp.example;")
    # Behind the signature: the mailbox copy's bytes (Received header, then the message as sent).
    assert received.endswith(local) and local.endswith(message)
    assert b"DKIM-Signature" not in local

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns_port

    def dnsfunc(qname, timeout=5):
        answer = resolver.resolve(qname.decode(), "TXT", lifetime=timeout)
        return b"".join(answer[0].strings)

    assert dkim.verify(received, dnsfunc=dnsfunc)
    assert not dkim.verify(received.replace(b"Page 1", b"Page 9"), dnsfunc=dnsfunc)
