"""
Authenticated submission on real sockets: 587 with STARTTLS + AUTH, 465
with implicit TLS, through swaks, smtplib and openssl s_client, to a real
smart host (smtp-sink). The user is created with the `exgateway user` command.
"""

import hashlib
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, exgateway_cli, free_port, start_sink, wait_for_port

USER, PASSWORD = "scanner01@corp.example", "Corr3ct-Horse"


def submission_config(submit_port: int, smtps_port: int, sink_port: int) -> str:
    return f"""
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:{submit_port}"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth", "BasicAuthRequireTLS"]
require_tls = true
protocol_logging_level = "Verbose"
# Replies, not their timing, are under test here (the tarpit has unit tests).
tarpit_interval = "0s"

[[receive_connectors]]
name = "Client SMTPS"
role = "frontend"
bindings = ["127.0.0.1:{smtps_port}"]
implicit_tls = true
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth", "BasicAuthRequireTLS"]
tarpit_interval = "0s"

[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{sink_port}"]

[authentication]
failure_tarpit = "1s"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sink = require_tool("smtp-sink")
    sink_dir = Path(tempfile.mkdtemp(prefix="exgw-sink-"))
    os.chmod(sink_dir, 0o777)
    sink_port, submit_port, smtps_port = free_port(), free_port(), free_port()
    proc = start_sink(sink, sink_port, str(sink_dir / "%M."))
    gw = Gateway(tmp_path_factory.mktemp("submission"))
    gw.add_config(submission_config(submit_port, smtps_port, sink_port))
    added = exgateway_cli(gw.config, "user", "add", USER, "--send-as", "*@apps.corp.example", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    gw.start()
    wait_for_port(submit_port)
    wait_for_port(smtps_port)
    gw.submit_port, gw.smtps_port, gw.sink_dir = submit_port, smtps_port, sink_dir
    yield gw
    proc.terminate()
    proc.wait()
    gw.stop()
    shutil.rmtree(sink_dir, ignore_errors=True)


def sink_messages(gw, count: int) -> list[bytes]:
    gw.wait_until(lambda: len(list(gw.sink_dir.iterdir())) >= count and gw.queue_files() == [], what=f"{count} messages at the sink")
    return [p.read_bytes() for p in sorted(gw.sink_dir.iterdir(), key=lambda p: p.stat().st_mtime)]


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("swaks"), "--hide-informational", *args], capture_output=True, text=True, timeout=60)


def test_swaks_submits_over_587_with_starttls_and_auth_and_the_smart_host_gets_it(env):
    before = len(list(env.sink_dir.iterdir()))
    run = swaks(
        "--server", f"127.0.0.1:{env.submit_port}", "--tls", "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
        "--from", USER, "--to", "someone@outside.example", "--header", "Subject: scan 587", "--body", "page 1",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "<~  235 2.7.0 Authentication successful" in run.stdout
    assert "<~  250 2.6.0" in run.stdout
    text = sink_messages(env, before + 1)[-1]
    assert b"Subject: scan 587" in text and b"X-Rcpt-Args: <someone@outside.example>" in text
    # The hub's Received header traces the message to the user, the TLS session and the connector.
    received = text[text.index(b"Received: from") :].split(b"\n\t(connector")[0]
    assert b"with ESMTPSA" in received and b"(authenticated as scanner01@corp.example)" in received
    assert b"TLSv1.3" in received or b"TLSv1.2" in received
    # Who relays through the connector: the relay client inventory, from the tracking log.
    def inventory():
        out = exgateway_cli(env.config, "clients", "--connector", "Client Frontend").stdout
        return out if "scanner01@corp.example" in out else None

    row = env.wait_until(inventory, what="the client inventory").splitlines()[2].split()
    assert row[:3] == ["127.0.0.1", "scanner01@corp.example", "EXSERVER\\Client"] and row[-1] == "yes"


def test_smtplib_submits_over_465_with_implicit_tls_and_auth_login(env):
    before = len(list(env.sink_dir.iterdir()))
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", env.smtps_port, context=context, timeout=10) as s:
        s.ehlo("legacy-app")
        assert "starttls" not in s.esmtp_features
        s.esmtp_features["auth"] = "LOGIN"
        assert s.login(USER, PASSWORD) == (235, b"2.7.0 Authentication successful")
        s.sendmail("alerts@apps.corp.example", ["ops@outside.example"], b"Subject: over 465\r\n\r\ndisk full\r\n")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
    text = sink_messages(env, before + 1)[-1]
    assert b"Subject: over 465" in text and b"X-Rcpt-Args: <ops@outside.example>" in text


def test_clear_text_auth_is_refused_and_mail_needs_tls(env):
    with smtplib.SMTP("127.0.0.1", env.submit_port, timeout=10) as s:
        s.ehlo("dev")
        assert "auth" not in s.esmtp_features and "starttls" in s.esmtp_features
        assert s.docmd("AUTH", "PLAIN AHNjYW5uZXIwMUBjb3JwLmV4YW1wbGUAQ29ycjNjdC1Ib3JzZQ==") == (504, b"5.7.4 Unrecognized authentication type")
        assert s.docmd("MAIL", f"FROM:<{USER}>") == (530, b"5.7.0 Must issue a STARTTLS command first")


def test_starttls_injection_is_not_executed(env):
    """Commands written in the same packet as STARTTLS never run (CVE-2011-0411 class)."""
    raw = socket.create_connection(("127.0.0.1", env.submit_port), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    raw.sendall(b"EHLO dev\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<victim@outside.example>\r\n")
    assert f.readline() == b"220 2.0.0 SMTP server ready\r\n"
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    tls = context.wrap_socket(raw)
    tf = tls.makefile("rb")
    tls.sendall(b"RCPT TO:<victim@outside.example>\r\n")
    assert tf.readline() == b"503 5.5.2 Need mail command\r\n"
    tls.sendall(b"EHLO dev\r\n")
    lines = [tf.readline()]
    while not lines[-1].startswith(b"250 "):
        lines.append(tf.readline())
    assert b"250-AUTH PLAIN LOGIN\r\n" in lines and b"250-STARTTLS\r\n" not in lines
    tls.sendall(b"STARTTLS\r\n")
    assert tf.readline() == b"503 5.5.2 Only one STARTTLS command can be issued per session\r\n"
    tls.close()
    assert "discarded" in env.log() and "bytes sent after STARTTLS" in env.log()


def test_wrong_password_and_send_as_violation(env):
    wrong = swaks("--server", f"127.0.0.1:{env.submit_port}", "--tls", "--auth", "LOGIN", "--auth-user", USER,
                  "--auth-password", "guess", "--from", USER, "--to", "a@outside.example", "--quit-after", "AUTH")
    assert "<~* 535 5.7.3 Authentication unsuccessful" in wrong.stdout
    spoof = swaks("--server", f"127.0.0.1:{env.submit_port}", "--tls", "--auth", "PLAIN", "--auth-user", USER,
                  "--auth-password", PASSWORD, "--from", "ceo@corp.example", "--to", "bank@outside.example")
    assert "<~* 550 5.7.60 SMTP; Client does not have permissions to send as this sender" in spoof.stdout
    assert PASSWORD not in env.log()
    logs = "".join(p.read_text() for p in (env.var / "logs").rglob("*.LOG"))
    assert PASSWORD not in logs and "AUTH PLAIN ****" in logs and ",scanner01@corp.example,authenticated" in logs


def s_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp", *args],
        input="QUIT\r\n", capture_output=True, text=True, timeout=30,
    )


def test_openssl_sees_only_tls12_and_up_and_the_store_certificate(env):
    listed = exgateway_cli(env.config, "certificate", "list")
    assert listed.returncode == 0, listed.stderr
    # The self-signed default is an RSA and an ECDSA certificate, served together: a row each.
    rows = [line for line in listed.stdout.splitlines() if "Client Frontend" in line]
    thumbprints = [row.split()[0] for row in rows]
    assert len(rows) == 2 and all(row.split()[1] == "....S.." and "CN=mail.corp.example" in row for row in rows)
    for old in ("-tls1", "-tls1_1"):
        assert s_client(env.submit_port, old).returncode != 0
    modern = s_client(env.submit_port, "-tls1_2")
    assert modern.returncode == 0, modern.stderr
    assert "Protocol  : TLSv1.2" in modern.stdout or "Protocol: TLSv1.2" in modern.stdout
    assert "subject=CN = mail.corp.example" in modern.stdout or "subject=CN=mail.corp.example" in modern.stdout
    assert "Peer signature type: ECDSA" in modern.stdout or "Peer signature type: ecdsa" in modern.stdout.lower()
    rsa_only = s_client(env.submit_port, "-sigalgs", "RSA-PSS+SHA256")
    assert rsa_only.returncode == 0, rsa_only.stderr
    assert "Peer signature type: RSA-PSS" in rsa_only.stdout
    weak = s_client(env.submit_port, "-tls1_2", "-cipher", "AES128-SHA:DES-CBC3-SHA:RC4-SHA")
    assert weak.returncode != 0
    served = []
    for ciphers in (None, "ECDHE-RSA-AES128-GCM-SHA256"):
        context = _no_verify()
        if ciphers:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(ciphers)
        with smtplib.SMTP("127.0.0.1", env.submit_port, timeout=10) as s:
            s.starttls(context=context)
            served.append(hashlib.sha1(s.sock.getpeercert(binary_form=True)).hexdigest().upper())
    # A default client gets the ECDSA certificate (listed second), one that allows RSA only the RSA one.
    assert served == thumbprints[::-1]


def _no_verify():
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def test_a_replaced_certificate_is_served_after_reload_without_restart(env):
    certs = env.var / "certs"
    (old,) = list(certs.glob("*.pem"))
    made = exgateway_cli(env.config, "certificate", "new-self-signed", "--subject", "CN=mail.corp.example, O=Renewed", "--san", "mail.corp.example")
    assert made.returncode == 0, made.stderr
    new_thumbprint = made.stdout.split("Thumbprint ")[1].split()[0]
    old.unlink()
    pid = env.pid
    env.process.send_signal(signal.SIGHUP)
    env.wait_until(lambda: "configuration reloaded" in env.log(), what="the reload")
    with smtplib.SMTP("127.0.0.1", env.submit_port, timeout=10) as s:
        s.starttls(context=_no_verify())
        assert hashlib.sha1(s.sock.getpeercert(binary_form=True)).hexdigest().upper() == new_thumbprint
    assert env.process.pid == pid and env.process.poll() is None
