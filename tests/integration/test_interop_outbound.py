"""
The hub's outbound side against next hops that are strict or old (issue 18):
real sockets on loopback, the gateway as a real process.
"""

import pytest

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import free_port
from tests.integration.test_outbound import relay_gateway, send


@pytest.mark.parametrize("esmtp", [True, False], ids=["ehlo-without-size", "helo-only"])
def test_a_strict_next_hop_without_size_gets_no_size_parameter(tmp_path, esmtp):
    """A next hop that answers 555 to unoffered parameters: without SIZE (or EHLO) it sees a bare MAIL FROM and gets the message."""
    hop = CaptureServer("127.0.0.1", free_port(), extensions=[b"PIPELINING"], esmtp=esmtp)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        send(gw, ["far@outside.example"], b"Subject: strict\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery to the strict next hop")
        (txn,) = hop.transactions
        assert txn.commands == [b"MAIL FROM:<app@corp.example>", b"RCPT TO:<far@outside.example>"]
        assert txn.data.endswith(b"Subject: strict\r\n\r\nhello\r\n")
    finally:
        gw.stop()
        hop.stop()
