"""
Outbound STARTTLS injection: a next hop (or a man in the middle) answers
STARTTLS with `220` and, in the same write, forged replies to the EHLO,
MAIL, RCPT, DATA and the end of the body the gateway will send inside TLS.
Were they read, the message would be marked delivered (tracking `SEND` with
the forged 250) while nothing left the gateway. The hub refuses the
connection instead: the message stays queued and the attempt is a TLS
failure in the log and a DEFER in the tracking log.
"""

from tests.integration.gatewayproc import exgateway_cli
from tests.integration.test_outbound import relay_gateway, send
from tests.security.hostile import ScriptedPeer

FORGED = (
    b"220 2.0.0 Ready to start TLS\r\n"
    b"250-hop.outside.example\r\n250 PIPELINING\r\n"
    b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 Start mail input\r\n"
    b"250 2.6.0 <forged@hop> Queued mail for delivery\r\n"
)


def injecting_hop(peer):
    peer.send(b"220 hop.outside.example ESMTP\r\n")
    peer.read_until(b"\r\n")
    peer.send(b"250-hop.outside.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    peer.read_until(b"STARTTLS\r\n")
    peer.send(FORGED)
    peer.drain()


def test_replies_behind_the_220_to_starttls_never_deliver_the_message(tmp_path):
    """tls = "required": the forged replies are refused, nothing is marked sent, the message waits in the queue."""
    hop = ScriptedPeer(injecting_hop)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", 'tls = "required"\nconnection_timeout = "3s"', retry="1h")
    try:
        send(gw, ["far@outside.example"], b"Subject: payroll\r\n\r\nconfidential\r\n")

        def tracked():
            out = exgateway_cli(gw.config, "track", "--sender", "app@corp.example").stdout
            return out if "DEFER" in out or "SEND" in out else None

        table = gw.wait_until(tracked, what="the attempt in the tracking log")
        events = [line.split()[1] for line in table.splitlines()[2:] if line.strip()]
        assert "SEND" not in events and "forged@hop" not in table
        assert "DEFER" in events
        assert len(gw.queued()) == 1
        log = gw.log()
        assert "TLS negotiation with 127.0.0.1 failed: " in log and "after the 220 to STARTTLS, before the handshake" in log
        # Nothing of the message went out, in clear or otherwise.
        wire = b"".join(hop.received)
        assert b"MAIL FROM" not in wire and b"confidential" not in wire
        assert hop.errors == []
    finally:
        gw.stop()
        hop.stop()
