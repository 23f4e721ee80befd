"""
An application with a From: it cannot change, on real sockets: submission
over 587 (STARTTLS + AUTH) with `header_from = "authenticated_user"`, DKIM
on: the smart host gets the user's address in From:, signed, and the
signature (over the replaced From:) verifies with dkimpy.
"""

import re
import smtplib
import ssl

import dkim

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import Gateway, exgateway_cli, free_port, wait_for_port

USER, PASSWORD = "scanner01@corp.example", "Corr3ct-Horse"


def test_a_foreign_from_is_replaced_then_signed(tmp_path):
    capture = CaptureServer("127.0.0.1", free_port())
    submit_port = free_port()
    gw = Gateway(tmp_path / "gw")
    out = exgateway_cli(gw.config, "dkim", "new-key", "--domain", "corp.example", "--selector", "apps1", "--type", "ed25519")
    assert out.returncode == 0, out.stderr
    record = "".join(re.findall(r'"([^"]*)"', out.stdout.splitlines()[-1]))
    added = exgateway_cli(gw.config, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    gw.add_config(f"""
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:{submit_port}"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth", "BasicAuthRequireTLS"]
require_tls = true
tarpit_interval = "0s"

[[send_connectors]]
name = "Internet"
address_spaces = ["outside.example"]
smart_hosts = ["127.0.0.1:{capture.port}"]

[authentication]
check_header_from = true
header_from = "authenticated_user"

[dkim]
selectors = {{ "corp.example" = "apps1" }}
""")
    gw.start()
    message = b"From: Accounts Payable <ceo@corp.example>\r\nTo: partner@outside.example\r\nSubject: invoice 9\r\n\r\nplease pay\r\n"
    try:
        wait_for_port(submit_port)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", submit_port, timeout=10) as s:
            s.starttls(context=context)
            s.login(USER, PASSWORD)
            s.sendmail(USER, ["partner@outside.example"], message)
        (txn,) = gw.wait_until(lambda: capture.transactions, what="the message at the smart host")
    finally:
        gw.stop()
        capture.stop()
    received = txn.data
    assert received.endswith(message.replace(b"From: Accounts Payable <ceo@corp.example>", b"From: scanner01@corp.example"))
    assert received.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;")
    assert dkim.verify(received, dnsfunc=lambda name, timeout=5: record.encode() if name == b"apps1._domainkey.corp.example." else None)
    assert "header From 'Accounts Payable <ceo@corp.example>' is not an address scanner01@corp.example may send as" in gw.log()
