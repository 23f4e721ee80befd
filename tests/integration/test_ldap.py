"""AUTH against a real OpenLDAP slapd (StartTLS, a service account, AD-style attributes), through swaks on 587."""

import datetime
import subprocess

import pytest
import pytest_twisted
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from gateway.auth.identity import DirectoryUnavailable
from gateway.auth.ldap import LDAPChecker
from gateway.config import LDAPConfig
from gateway.tls.store import make_self_signed
from tests.integration.conftest import require_tool
from tests.integration.gatewayproc import Gateway, free_port, wait_for_port
from tests.integration.slapd import ADMIN_DN, ADMIN_PASSWORD, BASE_DN, Slapd

PASSWORD = "Ld@p-Pa55"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ldap")
    slapd = Slapd(directory / "slapd", require_tool("slapd"), require_tool("slapadd"), PASSWORD).start()
    port = free_port()
    gw = Gateway(directory / "gw")
    gw.add_config(f"""
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:{port}"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth", "BasicAuthRequireTLS"]

[authentication]
backends = ["users_file", "ldap"]
failure_tarpit = "0s"
[authentication.ldap]
url = "ldap://localhost:{slapd.port}"
start_tls = true
ca_file = "{slapd.ca_file}"
base_dn = "{BASE_DN}"
bind_dn = "{ADMIN_DN}"
bind_password = "{ADMIN_PASSWORD}"
timeout = "3s"

[recipient_validation]
sources = ["list", "ldap"]
""")
    gw.var.mkdir(parents=True, exist_ok=True)
    (gw.var / "recipients.txt").write_text("helpdesk@corp.example\n")
    gw.start()
    wait_for_port(port)
    gw.submit_port, gw.slapd = port, slapd
    yield gw
    gw.stop()
    slapd.stop()


def swaks(gw, user, password, sender, *extra):
    run = subprocess.run(
        [require_tool("swaks"), "--hide-informational", "--server", f"127.0.0.1:{gw.submit_port}", "--tls", "--auth", "PLAIN",
         "--auth-user", user, "--auth-password", password, "--from", sender, "--to", "helpdesk@corp.example", *extra],
        capture_output=True, text=True, timeout=60,
    )
    return run.stdout


def test_directory_user_logs_in_by_account_name_and_sends_as_a_proxy_address(env):
    out = swaks(env, "scanner1", PASSWORD, "scans@apps.corp.example", "--header", "Subject: from ldap")
    assert "<~  235 2.7.0 Authentication successful" in out and "<~  250 2.6.0" in out
    (message,) = env.wait_until(lambda: env.mailbox("helpdesk@corp.example"), what="delivery")
    assert b"Subject: from ldap" in message and b"(authenticated as scanner1)" in message


def test_user_principal_name_works_and_send_as_comes_from_the_directory(env):
    out = swaks(env, "scanner1@corp.example", PASSWORD, "someone.else@corp.example")
    assert "<~  235 2.7.0 Authentication successful" in out
    assert "<~* 550 5.7.60 SMTP; Client does not have permissions to send as this sender" in out


def test_recipients_of_the_authoritative_domain_are_looked_up_in_the_list_and_the_directory(env):
    """Issue 16 item 13 through twistd: a directory entry's address is a recipient; a guess is refused at RCPT."""
    out = swaks(env, "scanner1", PASSWORD, "scanner1@corp.example", "--to", "scanner1@corp.example,nobody@corp.example",
                "--quit-after", "RCPT")
    assert "<~  250 2.1.5 Recipient OK" in out
    assert "<~* 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup" in out


def test_wrong_password_is_535(env):
    out = swaks(env, "scanner1", "not-it", "scans@apps.corp.example", "--quit-after", "AUTH")
    assert "<~* 535 5.7.3 Authentication unsuccessful" in out


@pytest_twisted.ensureDeferred
async def test_ldaps_with_anonymous_search_checks_the_server_certificate(env):
    """LDAPS (TLS from the first byte) against the CA file; a certificate it does not trust is a temporary failure."""
    from twisted.internet import reactor

    good = LDAPChecker(LDAPConfig(url=f"ldaps://localhost:{env.slapd.ldaps_port}", base_dn=BASE_DN, ca_file=env.slapd.ca_file), reactor)
    identity = await good.requestAvatarId(UsernamePassword(b"scanner1", PASSWORD.encode()))
    assert identity.send_as.patterns == ("scanner1@corp.example", "scans@apps.corp.example")
    with pytest.raises(UnauthorizedLogin):
        await good.requestAvatarId(UsernamePassword(b"scanner1", b"wrong"))
    other_ca = env.slapd.directory / "other-ca.pem"
    pem = make_self_signed("CN=localhost", ("localhost",), datetime.datetime.now(datetime.UTC))
    other_ca.write_bytes(pem[pem.index(b"-----BEGIN CERTIFICATE") :])
    untrusted = LDAPChecker(LDAPConfig(url=f"ldaps://localhost:{env.slapd.ldaps_port}", base_dn=BASE_DN, ca_file=other_ca), reactor)
    with pytest.raises(DirectoryUnavailable):
        await untrusted.requestAvatarId(UsernamePassword(b"scanner1", PASSWORD.encode()))


@pytest_twisted.ensureDeferred
async def test_a_directory_that_never_answers_times_out_as_temporary():
    """A listener that accepts and says nothing: the timeout turns it into 454, not a hang."""
    import socket

    from twisted.internet import reactor

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    try:
        port = silent.getsockname()[1]
        checker = LDAPChecker(LDAPConfig(url=f"ldap://127.0.0.1:{port}", base_dn=BASE_DN, timeout=0.5), reactor)
        with pytest.raises(DirectoryUnavailable, match="did not answer in time"):
            await checker.requestAvatarId(UsernamePassword(b"scanner1", PASSWORD.encode()))
    finally:
        silent.close()


def test_directory_down_is_a_temporary_failure(env):
    """
    A password the gateway has not verified yet gets 454 (try later), never 535, while the
    directory is down; one it verified within credential_cache_ttl (the earlier tests') still
    works, as with Dovecot's auth cache (issue 22 item 1).
    """
    env.slapd.stop()
    out = swaks(env, "scanner1", "Not-verified-yet-1", "scans@apps.corp.example", "--quit-after", "AUTH")
    assert "<~* 454 4.7.0 Temporary authentication failure" in out
    assert "credential backend ldap unavailable" in env.log()
    out = swaks(env, "scanner1", PASSWORD, "scans@apps.corp.example", "--quit-after", "AUTH")
    assert "<~  235 2.7.0 Authentication successful" in out
