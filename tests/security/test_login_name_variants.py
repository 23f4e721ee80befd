"""
Issue 16 item 6: `scanner1`, ` scanner1`, `scanner1 ` and
`SCANNER1@corp.example` reached one LDAP entry with separate lockout and
rate counters. Names with surrounding white space are refused; the others
count against the account (the entry's DN, the users file's name).
"""

import pytest
import pytest_twisted
from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import fail, succeed

from gateway.auth.identity import Identity, WrongPassword
from gateway.auth.ldap import LDAPChecker
from gateway.auth.sendas import SenderPatterns
from gateway.config import LDAPConfig
from tests.smtpd.test_tls_auth import Client, b64, users_path  # noqa: F401 (fixture)

FAILED = "535 5.7.3 Authentication unsuccessful"
TEMPFAIL = "454 4.7.0 Temporary authentication failure"
DN = "cn=scanner one,dc=corp,dc=example"


class Directory:
    """One directory entry found by its account name or its mail address (any case), as LDAP finds it."""

    credentialInterfaces = ()

    def requestAvatarId(self, credentials):
        name = credentials.username.decode()
        if name.lower() not in ("scanner1", "scanner1@corp.example"):
            from twisted.cred.error import UnauthorizedLogin

            return fail(UnauthorizedLogin("no such user"))
        if credentials.password != b"Ld@p-Pa55":
            return fail(WrongPassword("ldap:" + DN))
        return succeed(Identity(name, SenderPatterns.of(("scanner1@corp.example",)), (), "ldap", "ldap:" + DN))


def session(users_path, throttle=None, **auth):
    c = Client(users_path, backends=[("ldap", Directory())], auth_settings=dict({"max_failures_per_connection": 10}, **auth))
    if throttle is not None:
        c.auth.throttle = throttle
        c.proto.auth = c.auth
    c.starttls()
    return c


def auth(c, user, password):
    """The reply to one AUTH, at once or after the failure tarpit."""
    now = c.send(f"AUTH PLAIN {b64(chr(0) + user + chr(0) + password)}\r\n")
    c.clock.advance(2)
    return now + c.read()


@pytest.mark.parametrize("name", [" scanner1", "scanner1 ", "\tscanner1"])
def test_names_with_surrounding_white_space_are_refused(users_path, name):
    c = session(users_path)
    assert auth(c, name, "Ld@p-Pa55") == [FAILED]


def test_spellings_of_one_account_share_its_lockout(users_path):
    c = session(users_path, max_failures_per_user=3, max_failures_per_source=100)
    assert auth(c, "scanner1", "a") == [FAILED]
    assert auth(c, "SCANNER1@corp.example", "b") == [FAILED]
    assert auth(c, "Scanner1", "c") == [FAILED]
    # The account is locked: the right password, under any spelling, is refused like a guess.
    assert auth(c, "scanner1@corp.example", "Ld@p-Pa55") == [TEMPFAIL]
    assert auth(c, "scanner1", "Ld@p-Pa55") == [TEMPFAIL]
    assert c.auth.throttle.user_locked("ldap:" + DN)


def test_spellings_of_one_account_share_its_message_rate(users_path):
    limits = None
    replies = []
    for name in ("scanner1", "SCANNER1@corp.example", "scanner1@CORP.example"):
        c = Client(users_path, {"message_rate_limit": 2, "message_rate_source": "User"}, backends=[("ldap", Directory())])
        # Three sessions of one listener: one ConnectionLimits.
        limits = c.proto.limits = limits or c.proto.limits
        c.starttls()
        assert auth(c, name, "Ld@p-Pa55") == ["235 2.7.0 Authentication successful"]
        replies.append(c.send("MAIL FROM:<scanner1@corp.example>\r\n")[0])
    assert replies == ["250 2.1.0 Sender OK", "250 2.1.0 Sender OK",
                       "421 4.4.2 Message submission rate for this client has exceeded the configured limit"]


def test_users_file_account_name_in_any_case_shares_one_counter(users_path):
    """The users file looks names up case-blind; its account is the name, lower-cased."""
    c2 = Client(users_path, auth_settings={"max_failures_per_user": 2, "max_failures_per_source": 100, "max_failures_per_connection": 10})
    c2.starttls()
    assert auth(c2, "scanner01@corp.example", "x") == [FAILED]
    assert auth(c2, "SCANNER01@Corp.Example", "y") == [FAILED]
    assert auth(c2, "scanner01@corp.example", "right-pw") == [TEMPFAIL]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    from tests.integration.conftest import require_tool
    from tests.integration.slapd import Slapd

    server = Slapd(tmp_path_factory.mktemp("slapd"), require_tool("slapd"), require_tool("slapadd"), "Ld@p-Pa55").start()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_a_real_directory_names_one_account_for_every_spelling(slapd):
    """Against OpenLDAP: the uid and the mail address find one entry, and a wrong password is counted against its DN."""
    from twisted.internet import reactor

    from tests.integration.slapd import BASE_DN

    checker = LDAPChecker(LDAPConfig(url=f"ldap://127.0.0.1:{slapd.port}", base_dn=BASE_DN), reactor)
    accounts = set()
    for name in (b"scanner1", b"SCANNER1@corp.example"):
        with pytest.raises(WrongPassword) as e:
            await checker.requestAvatarId(UsernamePassword(name, b"wrong"))
        accounts.add(e.value.account)
        identity = await checker.requestAvatarId(UsernamePassword(name, b"Ld@p-Pa55"))
        accounts.add(identity.account)
    assert accounts == {"ldap:cn=scanner one,dc=corp,dc=example"}
