"""
Sender-dependent routing end to end: the scanners' mail (source_senders)
goes to their own smart host, everyone else's to the default; a scanner
message deferred before a restart still takes the scanners' route after it.
"""

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import exgateway_cli, free_port
from tests.integration.test_outbound import relay_gateway, send


def test_the_scanners_route_holds_across_a_restart(tmp_path):
    default_hop = CaptureServer("127.0.0.1", free_port())
    scanner_port = free_port()
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{default_hop.port}", extra=f"""
[[send_connectors]]
name = "Scanners"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{scanner_port}"]
connection_timeout = "2s"
cost = 50
source_senders = ["*@scan.corp.example"]
""")
    scanner_hop = None
    try:
        send(gw, ["far@outside.example"], b"Subject: app\r\n\r\nfrom an app\r\n", sender="app@corp.example")
        send(gw, ["far@outside.example"], b"Subject: scan\r\n\r\nfrom a scanner\r\n", sender="mfp1@scan.corp.example")
        gw.wait_until(lambda: default_hop.transactions and "deferred" in gw.log(), what="the app's delivery and the scanner's deferral")
        assert [t.mail_from for t in default_hop.transactions] == ["app@corp.example"]
        listed = exgateway_cli(gw.config, "queue", "list").stdout
        assert "EXSERVER\\Scanners" in listed and "MessageCount" in listed
        gw.stop()

        scanner_hop = CaptureServer("127.0.0.1", scanner_port)
        gw.start()
        gw.wait_until(lambda: scanner_hop.transactions and gw.queue_files() == [], what="the scanner's message at its own smart host")
        assert [t.mail_from for t in scanner_hop.transactions] == ["mfp1@scan.corp.example"]
        assert [t.mail_from for t in default_hop.transactions] == ["app@corp.example"]
    finally:
        gw.stop()
        default_hop.stop()
        if scanner_hop is not None:
            scanner_hop.stop()
