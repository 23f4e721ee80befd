"""
Unbounded replies from a next hop: a server that greets with `220-` lines
and never ends the reply. The hub drops the connection once a reply passes
100 lines or 64 KB, defers the message and marks the address bad, instead of
buffering whatever the peer sends (200 MB grew the hub by 250 MB in 2 s).
"""

from tests.integration.gatewayproc import rss_kb
from tests.integration.test_outbound import relay_gateway, send
from tests.security.hostile import ScriptedPeer

FLOOD = 200 * 1024 * 1024
LINE = b"220-" + b"x" * 1000 + b"\r\n"


class Flood:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def __call__(self, peer) -> None:
        chunk, sent = LINE * 64, 0
        self.sent.append(0)
        try:
            while sent < FLOOD:
                peer.send(chunk)
                sent += len(chunk)
                self.sent[-1] = sent
        finally:
            self.sent[-1] = sent


def test_a_greeting_that_never_ends_is_cut_off_and_the_message_deferred(tmp_path):
    flood = Flood()
    hop = ScriptedPeer(flood)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", 'connection_timeout = "3s"', retry="1h")
    try:
        before = rss_kb(gw.pid)
        send(gw, ["far@outside.example"], b"Subject: x\r\n\r\nhello\r\n")
        gw.wait_until(lambda: "deferred" in gw.log(), what="the deferral")
        log = gw.log()
        assert "sent a reply of more than 100 lines or 65536 bytes" in log
        # The address is marked bad: the pool says so as it moves on.
        assert f"127.0.0.1:{hop.port} unavailable: " in log
        assert len(gw.queued()) == 1
        hop.stop()
        # The peer could write little more than the cap and the kernel's socket buffers.
        assert flood.sent and max(flood.sent) < 16 * 1024 * 1024, flood.sent
        assert rss_kb(gw.pid) - before < 32 * 1024
    finally:
        gw.stop()
        hop.stop()


def test_a_hub_that_floods_its_greeting_gives_the_client_451_not_a_bloated_frontend(tmp_path):
    """The frontend's hand-off uses the same client: the bound holds toward a hub too, and the hub is marked down."""
    import smtplib

    from tests.integration.gatewayproc import Gateway, config_text, free_port

    flood = Flood()
    hub = ScriptedPeer(flood)
    front_port = free_port()
    directory = tmp_path / "front"
    directory.mkdir()
    config = directory / "exgateway.toml"
    config.write_text(config_text(front_port, hub.port, directory / "var"))
    front = Gateway(directory, role="frontend", config=config, frontend_port=front_port, hub_port=hub.port).start()
    try:
        with smtplib.SMTP("127.0.0.1", front_port, timeout=30) as s:
            s.ehlo("dev")
            s.mail("printer@devices.example")
            assert s.rcpt("alice@corp.example") == (451, b"4.4.0 Temporary server error. Please try again later")
        log = front.log()
        assert "sent a reply of more than 100 lines or 65536 bytes" in log
        assert f"127.0.0.1:{hub.port} unavailable: " in log
        hub.stop()
        assert flood.sent and max(flood.sent) < 16 * 1024 * 1024, flood.sent
    finally:
        front.stop()
        hub.stop()
