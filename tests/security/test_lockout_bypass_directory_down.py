"""
Issue 16 item 5: with backends = ["users_file", "ldap"] and the directory
down, wrong local passwords got `454` at once, uncounted: 12 wrong guesses,
then the right one, got `235`. A refusal by the users file now counts and
is tarpitted whatever the directory (down) says, so the lockout holds.
"""

from twisted.internet.defer import fail

from gateway.auth.identity import DirectoryUnavailable
from gateway.auth.users import UsersFile, UsersFileChecker
from tests.smtpd.test_tls_auth import Client, b64, users_path  # noqa: F401 (fixture)

TEMPFAIL = "454 4.7.0 Temporary authentication failure"


class DirectoryDown:
    credentialInterfaces = ()

    def requestAvatarId(self, credentials):
        return fail(DirectoryUnavailable("the directory did not answer in time"))


def backends(users_path):
    return [("users_file", UsersFileChecker(UsersFile(users_path), lambda f, *a: f(*a))), ("ldap", DirectoryDown())]


def attempt(c, password):
    return c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + password)}\r\n")


def test_wrong_local_passwords_count_and_wait_while_the_directory_is_down(users_path):
    first = Client(users_path, backends=backends(users_path))
    first.starttls()
    assert attempt(first, "guess-1") == []          # tarpitted, not answered at once
    first.clock.advance(1.9)
    assert first.read() == []
    first.clock.advance(0.1)
    assert first.read() == [TEMPFAIL]
    assert first.proto.auth_failures == 1
    throttle = first.auth.throttle
    guesses = 1
    while guesses < 12:
        c = Client(users_path, backends=backends(users_path))
        c.auth.throttle = throttle
        c.proto.auth = c.auth
        c.starttls()
        for _ in range(3):
            attempt(c, f"guess-{guesses}")
            c.clock.advance(2)
            guesses += 1
            if c.transport.disconnecting:
                break
    last = Client(users_path, backends=backends(users_path))
    last.auth.throttle = throttle
    last.proto.auth = last.auth
    last.starttls()
    attempt(last, "right-pw")
    last.clock.advance(2)
    assert last.read() == [TEMPFAIL]
    assert last.proto.session.identity is None
    assert throttle.locked("192.0.2.1") == "source"


def test_the_right_local_password_still_works_while_the_directory_is_down(users_path):
    c = Client(users_path, backends=backends(users_path))
    assert c.login() == ["235 2.7.0 Authentication successful"]


def test_an_outage_alone_is_not_counted(users_path):
    """Nobody refused the credentials, the directory could not answer: 454 at once, as before."""
    c = Client(users_path, backends=[("ldap", DirectoryDown())])
    assert c.login() == [TEMPFAIL]
    assert c.proto.auth_failures == 0 and c.auth.throttle.locked("192.0.2.1") is None
