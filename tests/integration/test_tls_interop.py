"""
TLS against real clients (issue 18): ALPN offers on 465 and 587, session
resumption, and an old-device profile on a scoped connector, through
`openssl s_client` and Python's ssl module on loopback.
"""

import smtplib
import socket
import ssl
import subprocess
import warnings

import pytest

from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, free_port, wait_for_port
from tests.integration.test_submission import submission_config


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    submit, smtps, legacy, sink = free_port(), free_port(), free_port(), free_port()
    gw = Gateway(tmp_path_factory.mktemp("tls-interop"))
    gw.add_config(submission_config(submit, smtps, sink) + f"""
[[receive_connectors]]
name = "Old Printers"
role = "frontend"
bindings = ["127.0.0.1:{legacy}"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth", "BasicAuthRequireTLS"]
tls_cipher_profile = "legacy"
tls_min_version = "1.0"
tarpit_interval = "0s"
""")
    gw.start()
    for port in (submit, smtps, legacy):
        wait_for_port(port)
    gw.submit_port, gw.smtps_port, gw.legacy_port = submit, smtps, legacy
    yield gw
    gw.stop()


def s_client(port: int, *args: str, stdin: bytes = b"QUIT\r\n") -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", "-nocommands", *args],
        input=stdin, capture_output=True, timeout=30,
    )


def no_verify(alpn=None, version=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    return ctx


@pytest.mark.parametrize("starttls", [False, True], ids=["465", "587-starttls"])
def test_openssl_offering_alpn_smtp_gets_the_banner_and_no_alpn(gw, starttls):
    """`openssl s_client -alpn smtp` got alert 80 (internal error) with Twisted 26 + OpenSSL 3; now no ALPN is negotiated and SMTP goes on."""
    args = ["-starttls", "smtp"] if starttls else []
    run = s_client(gw.submit_port if starttls else gw.smtps_port, "-alpn", "smtp", *args, stdin=b"EHLO alpn.example\r\nQUIT\r\n")
    out = run.stdout.decode()
    assert run.returncode == 0, out + run.stderr.decode()
    assert "No ALPN negotiated" in out and "alert" not in run.stderr.decode()
    if not starttls:
        assert "220 mail.corp.example exgateway ESMTP MAIL Service ready" in out
    assert "250-AUTH LOGIN PLAIN" in out.replace("250-AUTH PLAIN LOGIN", "250-AUTH LOGIN PLAIN") and "221 2.0.0" in out


@pytest.mark.parametrize("offer", [["smtp"], ["h2", "http/1.1"]])
def test_python_ssl_offering_alpn_submits_on_465_and_587(gw, offer):
    ctx = no_verify(alpn=offer)
    with smtplib.SMTP_SSL("127.0.0.1", gw.smtps_port, context=ctx, timeout=10) as s:
        assert s.ehlo("alpn-client")[0] == 250
        assert s.sock.selected_alpn_protocol() is None
    with smtplib.SMTP("127.0.0.1", gw.submit_port, timeout=10) as s:
        s.ehlo("alpn-client")
        assert s.starttls(context=ctx)[0] == 220
        assert s.ehlo("alpn-client")[0] == 250 and "auth" in s.esmtp_features
        assert s.sock.selected_alpn_protocol() is None


def _implicit(port, ctx, session=None):
    with (socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
          ctx.wrap_socket(raw, server_hostname="mail.corp.example", session=session) as tls):
        # Reading the banner also takes the TLS 1.3 tickets, which come after the handshake.
        assert tls.recv(1024).startswith(b"220 ")
        tls.sendall(b"QUIT\r\n")
        tls.recv(1024)
        return tls.session, tls.session_reused


def _starttls(port, ctx, session=None):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO resume.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220 ")
        with ctx.wrap_socket(raw, server_hostname="mail.corp.example", session=session) as tls:
            tls.sendall(b"EHLO resume.example\r\n")
            assert tls.recv(4096).startswith(b"250")
            tls.sendall(b"QUIT\r\n")
            tls.recv(1024)
            return tls.session, tls.session_reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_a_reconnecting_client_resumes_its_session_on_465_and_587(gw, version):
    ctx = no_verify()
    ctx.minimum_version = ctx.maximum_version = version
    for connect, port in ((_implicit, gw.smtps_port), (_starttls, gw.submit_port)):
        session, reused = connect(port, ctx)
        assert not reused
        assert connect(port, ctx, session)[1], f"not resumed on {port}"


def test_openssl_sess_out_sess_in_shows_reused(gw, tmp_path):
    sess = tmp_path / "session.pem"
    first = s_client(gw.submit_port, "-starttls", "smtp", "-sess_out", str(sess), stdin=b"EHLO a.example\r\nQUIT\r\n")
    assert first.returncode == 0 and "New, TLSv1.3" in first.stdout.decode()
    second = s_client(gw.submit_port, "-starttls", "smtp", "-sess_in", str(sess), stdin=b"EHLO a.example\r\nQUIT\r\n")
    assert "Reused, TLSv1.3" in second.stdout.decode(), second.stdout.decode()


def test_a_tls_1_0_only_client_gets_in_on_the_scoped_legacy_connector_and_not_on_587(gw):
    """`openssl s_client -tls1` (an old printer's firmware): handshakes on the legacy connector, refused on the modern one."""
    old = ["-starttls", "smtp", "-tls1", "-cipher", "AES128-SHA:@SECLEVEL=0"]
    ok = s_client(gw.legacy_port, *old, stdin=b"EHLO printer.example\r\nQUIT\r\n")
    out = ok.stdout.decode()
    assert ok.returncode == 0, out + ok.stderr.decode()
    assert "Protocol  : TLSv1\n" in out and "Cipher    : AES128-SHA" in out and "250-AUTH" in out
    refused = s_client(gw.submit_port, *old, stdin=b"EHLO printer.example\r\nQUIT\r\n")
    assert refused.returncode != 0 and "250-AUTH" not in refused.stdout.decode()
    # Python's ssl at TLS 1.1 too.
    with smtplib.SMTP("127.0.0.1", gw.legacy_port, timeout=10) as s:
        s.ehlo("printer")
        s.starttls(context=no_verify(version=ssl.TLSVersion.TLSv1_1))
        assert s.sock.version() == "TLSv1.1"
        assert s.ehlo("printer")[0] == 250


def test_the_sample_config_offers_starttls_on_25_with_the_self_signed_certificate(tmp_path):
    """Issue 18 item 10: the shipped config, ports moved to loopback, gives port 25 STARTTLS (not required) as Exchange's Default Frontend does."""
    from gateway.config import default_config_path

    p25, p587, p465, hub = free_port(), free_port(), free_port(), free_port()
    text = default_config_path().read_text()
    for public, port in (("0.0.0.0:25", p25), ("0.0.0.0:587", p587), ("0.0.0.0:465", p465), ("127.0.0.1:2525", hub)):
        text = text.replace(public, f"127.0.0.1:{port}")
    text = text.replace('listen = "127.0.0.1:8025"', f'listen = "127.0.0.1:{free_port()}"')
    text = text.replace('var_dir = "var"', f'var_dir = "{tmp_path / "var"}"').replace('workers = "auto"', "workers = 1")
    config = tmp_path / "exgateway.toml"
    config.write_text(text)
    gw = Gateway(tmp_path, config=config, frontend_port=p25, hub_port=hub).start()
    try:
        with smtplib.SMTP("127.0.0.1", p25, timeout=10) as s:
            s.ehlo("printer.devices.example")
            assert "starttls" in s.esmtp_features and "auth" not in s.esmtp_features
            # Not required: a device that never starts TLS is still served.
            assert s.mail("printer@devices.example") == (250, b"2.1.0 Sender OK")
            s.rset()
            assert s.starttls(context=no_verify(alpn=["smtp"]))[0] == 220
            assert s.sock.version() in ("TLSv1.3", "TLSv1.2")
            from cryptography import x509

            served = x509.load_der_x509_certificate(s.sock.getpeercert(binary_form=True))
            assert served.issuer == served.subject  # the self-signed certificate made at first start
            s.ehlo("printer.devices.example")
            assert "starttls" not in s.esmtp_features
            assert s.mail("printer@devices.example") == (250, b"2.1.0 Sender OK")
            assert s.rcpt("alice@corp.example")[0] == 250
    finally:
        gw.stop()
