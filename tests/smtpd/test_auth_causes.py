"""AUTH failures: the protocol log names the cause, the client learns nothing more than 535 or 454."""

import pytest
from twisted.internet.defer import fail

from gateway.auth.identity import DirectoryUnavailable
from gateway.auth.users import UserRecord, UsersFile, hash_password
from gateway.connectors import parse_range
from tests.smtpd.test_tls_auth import Client, b64

VERBOSE = {"protocol_logging_level": "Verbose"}


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "users.toml"
    UsersFile(path).save([
        UserRecord("scanner01@corp.example", hash_password("right-pw"), (), (parse_range("10.20.0.0/16"),)),
        UserRecord("app@corp.example", hash_password("right-pw")),
    ])
    return path


def causes(c) -> list[tuple[str, str]]:
    return [(data, context) for event, data, context in c.log.lines if context.startswith("authentication failed")]


def attempt(c, user: str, password: str) -> list[str]:
    c.send(f"AUTH PLAIN {b64(chr(0) + user + chr(0) + password)}\r\n")
    c.clock.advance(2)
    return c.read()


def test_wrong_password_and_outside_the_users_networks_look_the_same_to_the_client(users):
    """From 192.0.2.1 the right password of a user bound to 10.20.0.0/16 gets the same 535 as a wrong one; the log says which."""
    c = Client(users, VERBOSE, auth_settings={"max_failures_per_connection": 5})
    c.starttls()
    assert attempt(c, "app@corp.example", "wrong") == ["535 5.7.3 Authentication unsuccessful"]
    assert attempt(c, "scanner01@corp.example", "right-pw") == ["535 5.7.3 Authentication unsuccessful"]
    assert attempt(c, "nobody@corp.example", "x") == ["535 5.7.3 Authentication unsuccessful"]
    assert causes(c) == [
        ("app@corp.example", "authentication failed: wrong password"),
        ("scanner01@corp.example", "authentication failed: outside the user's networks"),
        ("nobody@corp.example", "authentication failed: no such user"),
    ]


def test_locked_out_and_directory_down_are_named_in_the_log(users):
    """Both get 454 4.7.0 at the client; the log tells a lockout from an outage."""
    c = Client(users, VERBOSE, auth_settings={"max_failures_per_source": 1, "max_failures_per_connection": 5})
    c.starttls()
    attempt(c, "app@corp.example", "wrong")
    assert attempt(c, "app@corp.example", "right-pw") == ["454 4.7.0 Temporary authentication failure"]
    assert causes(c)[-1] == ("app@corp.example", "authentication failed: AUTH locked out for this source")

    class Down:
        credentialInterfaces = ()

        def requestAvatarId(self, credentials):
            return fail(DirectoryUnavailable("ldap://dc1.corp.example: timeout"))

    d = Client(users, VERBOSE, backends=[("ldap", Down())])
    assert d.login() == ["454 4.7.0 Temporary authentication failure"]
    assert causes(d) == [("scanner01@corp.example", "authentication failed: ldap://dc1.corp.example: timeout")]
