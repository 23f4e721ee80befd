"""Reload on a running gateway: a new accepted domain applies to new sessions, not to the open one."""

import os
import signal
import smtplib
import subprocess
import sys

from tests.integration.gatewayproc import REPO, Gateway, anon_relay


def test_reload_applies_to_new_sessions_only(tmp_path):
    gw = Gateway(tmp_path).start()
    try:
        open_session = smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10)
        open_session.ehlo("before")
        open_session.mail("app@devices.example")
        assert open_session.rcpt("x@new.example")[0] == 550

        text = gw.config.read_text().replace('domain = "corp.example"', 'domain = "corp.example"\n\n[[accepted_domains]]\ndomain = "new.example"')
        gw.config.write_text(text)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        result = subprocess.run(
            [sys.executable, "-m", "gateway.admin.cli", "--config", str(gw.config), "reload", "--pid", str(gw.pid)],
            capture_output=True, text=True, env=env,
        )
        assert result.returncode == 0, result.stderr
        gw.wait_until(lambda: "configuration reloaded" in gw.log(), what="the reload")

        # The open session keeps the policy it started with...
        assert open_session.rcpt("y@new.example") == (550, b"5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
        open_session.quit()
        # ...and a new one gets the new accepted domain, end to end.
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.sendmail("app@devices.example", ["zed@new.example"], b"Subject: reloaded\r\n\r\nhello\r\n")
        (stored,) = gw.wait_until(lambda: gw.mailbox("zed@new.example"), what="delivery to the new domain")
        assert stored.endswith(b"Subject: reloaded\r\n\r\nhello\r\n")

        # A broken file is refused; the gateway keeps running on what it had.
        gw.config.write_text(text.replace('role = "frontend"', 'role = "edge"'))
        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_until(lambda: "reload refused" in gw.log(), what="the refusal")
        assert "'edge' is not one of frontend, hub" in gw.log()
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.ehlo("after")
            s.mail("app@devices.example")
            assert s.rcpt("again@new.example")[0] == 250
    finally:
        gw.stop()


def test_reload_adds_a_relay_ip_for_new_connections(tmp_path):
    """Add a relay connector for 127.0.0.7 while its session is open: that session still gets 550 5.7.54, a new one passes."""
    gw = Gateway(tmp_path).start()
    try:
        old = smtplib.SMTP(timeout=10, source_address=("127.0.0.7", 0))
        old.connect("127.0.0.1", gw.frontend_port)
        old.ehlo("device")
        old.mail("device@devices.example")
        assert old.rcpt("someone@outside.example")[1].startswith(b"5.7.54")
        gw.add_config(anon_relay(gw.frontend_port, "127.0.0.7"))
        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_until(lambda: "configuration reloaded" in gw.log(), what="the reload")
        assert old.rcpt("other@outside.example")[1].startswith(b"5.7.54")
        old.quit()
        new = smtplib.SMTP(timeout=10, source_address=("127.0.0.7", 0))
        new.connect("127.0.0.1", gw.frontend_port)
        new.ehlo("device")
        new.mail("device@devices.example")
        # Past the connector's relay rule; the hub has no route outside the accepted domains yet.
        assert new.rcpt("someone@outside.example") == (550, b"5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain")
        new.quit()
        assert "-> EXSERVER\\Anon Relay" in gw.log()
    finally:
        gw.stop()


def test_reload_refuses_a_certificate_the_store_does_not_hold(tmp_path):
    """
    `exgateway reload` relays the gateway's refusal of a tls_certificate_name
    missing from the store (as start-up and config check refuse it); SIGHUP
    logs it; the running connectors keep serving.
    """
    from tests.integration.gatewayproc import exgateway_cli

    gw = Gateway(tmp_path).start()
    missing = "0123456789ABCDEF0123456789ABCDEF01234567"
    try:
        good = gw.config.read_text()
        gw.config.write_text(good.replace("[queue]", f"""
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:{gw.frontend_port}"]
remote_ip_ranges = ["127.0.0.9"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth"]
tls_certificate_name = "{missing}"

[queue]"""))
        reason = (
            f"{gw.config}: receive_connectors[2] (\"Client Frontend\").tls_certificate_name: no certificate in "
            f"{gw.var}/certs matches '{missing}' (it holds 1 certificate: `exgateway certificate list` shows them)"
        )
        refused = exgateway_cli(gw.config, "reload")
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[-2:] == [
            f"exgateway: the gateway refused {gw.config}; it keeps its running configuration:", f"  {reason}",
        ]
        assert f"reload refused, running configuration kept: {reason}" in gw.log()
        checked = exgateway_cli(gw.config, "config", "check")
        assert checked.returncode == 1 and f"  {reason}" in checked.stderr.splitlines()

        # SIGHUP: the same refusal, in the log.
        before = gw.log().count("reload refused")
        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_until(lambda: gw.log().count("reload refused") > before, what="the refusal")
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.sendmail("app@devices.example", ["alice@corp.example"], b"Subject: still\r\n\r\nserving\r\n")
        gw.wait_until(lambda: gw.mailbox("alice@corp.example"), what="delivery")
    finally:
        gw.stop()
