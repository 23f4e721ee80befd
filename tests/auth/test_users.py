"""The users file, its checker, and the portal over the backends."""

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import fail, succeed

from gateway.auth.identity import DirectoryUnavailable, Identity
from gateway.auth.portal import Authenticator
from gateway.auth.sendas import SenderPatterns
from gateway.auth.users import UserRecord, UsersFile, UsersFileChecker, UsersFileError, hash_password, parse_users
from gateway.connectors import parse_range


def sync(f, *args):
    return f(*args)


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    return out[0]


@pytest.fixture(scope="module")
def pw_hash():
    return hash_password("right-pw")


def write_users(tmp_path, pw_hash, **extra):
    users = UsersFile(tmp_path / "users.toml")
    users.save([UserRecord("scanner01@corp.example", pw_hash, ("*@apps.corp.example",), tuple(extra.get("ranges", ())))])
    return users


def login(users, user, password, ip="10.1.2.3"):
    return result(Authenticator([("users_file", UsersFileChecker(users, sync))]).login(user, password, ip))


def test_right_password_gives_the_identity_with_own_address(tmp_path, pw_hash):
    identity = login(write_users(tmp_path, pw_hash), "Scanner01@corp.example", "right-pw")
    assert identity.name == "scanner01@corp.example"
    assert identity.send_as.patterns == ("scanner01@corp.example", "*@apps.corp.example")


@pytest.mark.parametrize("user, password", [("scanner01@corp.example", "wrong"), ("nobody", "right-pw"), ("scanner01@corp.example", "")])
def test_wrong_password_unknown_user_and_empty_password_fail_alike(tmp_path, pw_hash, user, password):
    failure = login(write_users(tmp_path, pw_hash), user, password)
    assert failure.check(UnauthorizedLogin)


def test_a_right_password_from_outside_the_users_networks_fails_like_a_wrong_one(tmp_path, pw_hash):
    users = write_users(tmp_path, pw_hash, ranges=[parse_range("10.0.0.0/8")])
    assert isinstance(login(users, "scanner01@corp.example", "right-pw", "10.9.9.9"), Identity)
    assert login(users, "scanner01@corp.example", "right-pw", "192.0.2.1").check(UnauthorizedLogin)


def test_the_file_is_reread_when_it_changes_and_a_broken_one_fails_closed(tmp_path, pw_hash):
    """Issue 16 item 7: a file that no longer parses lets nobody in (it used to keep the last good accounts)."""
    users = write_users(tmp_path, pw_hash)
    assert list(users.users()) == ["scanner01@corp.example"]
    assert users.path.stat().st_mode & 0o777 == 0o600
    users.save([*users.users().values(), UserRecord("printer", pw_hash)])
    assert sorted(users.users()) == ["printer", "scanner01@corp.example"]
    users.path.write_text("[[users]]\nname = 'x'\n")
    assert users.users() == {}
    users.save([UserRecord("printer", pw_hash)])
    assert list(users.users()) == ["printer"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[users]]\nname = 'x'\npassword = 'plain'\n", "u.toml: users[0].password: must be an argon2 hash (set it with `exgateway user passwd x`)"),
        ("[[users]]\npassword = '$argon2id$x'\n", "u.toml: users[0].name: required"),
        ("[[users]]\nname = 'x'\npassword = '$argon2id$x'\ncolour = 'red'\n", "u.toml: users[0]: unknown key 'colour' (known: name, password, remote_ip_ranges, send_as)"),
        ("[[users]]\nname = 'x'\npassword = '$argon2id$x'\nsend_as = ['corp.example']\n",
         "u.toml: users[0] (x): 'corp.example' is not an address, *@domain, *@*.domain, <> or *"),
        ("[[users]]\nname = 'x'\npassword = '$argon2id$x'\n[[users]]\nname = 'X'\npassword = '$argon2id$x'\n", "u.toml: users[1].name: 'X' is listed twice"),
    ],
)
def test_a_bad_users_file_names_entry_and_key(text, message):
    with pytest.raises(UsersFileError) as e:
        parse_users(text, "u.toml")
    assert str(e.value) == message


class Fixed:
    """A backend with a fixed answer."""

    credentialInterfaces = ()

    def __init__(self, outcome):
        self.outcome = outcome

    def requestAvatarId(self, credentials):
        return succeed(self.outcome) if isinstance(self.outcome, Identity) else fail(self.outcome)


ALICE = Identity("alice", SenderPatterns.of(["alice@corp.example"]), (), "ldap")


def test_backends_are_tried_in_order_and_the_first_yes_wins():
    auth = Authenticator([("users_file", Fixed(UnauthorizedLogin())), ("ldap", Fixed(ALICE))])
    assert result(auth.login("alice", "pw", "192.0.2.1")) == ALICE


def test_a_backend_that_is_down_makes_a_no_temporary():
    auth = Authenticator([("ldap", Fixed(DirectoryUnavailable("timeout"))), ("users_file", Fixed(UnauthorizedLogin()))])
    assert result(auth.login("alice", "pw", "192.0.2.1")).check(DirectoryUnavailable)
    auth = Authenticator([("ldap", Fixed(DirectoryUnavailable("timeout"))), ("users_file", Fixed(ALICE))])
    assert result(auth.login("alice", "pw", "192.0.2.1")) == ALICE
