"""
Issue 22 item 1: the verified-credential cache. A login verified once is
remembered (no argon2 on the next); the policy around it (lockouts,
--remote-ip, counting) still runs on every login; a change to the users
file is seen at the very next login.
"""

import io
from pathlib import Path

import pytest
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed

from gateway.admin.cli import main
from gateway.auth.credcache import CredentialCache
from gateway.auth.identity import DirectoryUnavailable, Identity, LockedOut
from gateway.auth.sendas import SenderPatterns
from gateway.auth.service import build_auth
from gateway.auth.users import UserRecord, UsersFile, hash_password
from gateway.config import AuthConfig, default_config_path
from gateway.connectors import parse_range

USER = "scanner01@corp.example"


@pytest.fixture(scope="module")
def pw_hash():
    return hash_password("right-pw")


class Verifier:
    """Stands in for the verify pool: runs the check at once and counts the argon2 verifications."""

    def __init__(self):
        self.runs = 0

    def __call__(self, f, *args):
        self.runs += 1
        try:
            return succeed(f(*args))
        except Exception:
            return fail()


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    return out[0]


def setup(tmp_path, pw_hash, ranges=(), **settings):
    users = UsersFile(tmp_path / "users.toml")
    users.save([UserRecord(USER, pw_hash, ("*@apps.corp.example",), tuple(parse_range(r) for r in ranges))])
    clock = task.Clock()
    verifier = Verifier()
    config = AuthConfig(users_file=users.path, **settings)
    return build_auth(config, clock, verifier), clock, verifier


def login(auth, password, user=USER, ip="10.1.2.3"):
    return result(auth.authenticate(user, password, ip))


def test_a_verified_login_is_remembered_and_the_next_one_runs_no_argon2(tmp_path, pw_hash):
    auth, _clock, verifier = setup(tmp_path, pw_hash)
    first = login(auth, "right-pw")
    assert isinstance(first, Identity) and first.name == USER
    again = login(auth, "right-pw", user="Scanner01@Corp.Example")  # any spelling of the name: one key
    assert again == first
    assert verifier.runs == 1 and auth.cache.hits == 1


def test_a_different_password_never_hits(tmp_path, pw_hash):
    auth, _clock, verifier = setup(tmp_path, pw_hash)
    assert isinstance(login(auth, "right-pw"), Identity)
    assert login(auth, "right-pw ").check(UnauthorizedLogin)
    assert login(auth, "Right-pw").check(UnauthorizedLogin)
    assert verifier.runs == 3


def test_a_remembered_success_expires_after_the_ttl(tmp_path, pw_hash):
    auth, clock, verifier = setup(tmp_path, pw_hash)
    login(auth, "right-pw")
    clock.advance(3599)
    login(auth, "right-pw")
    assert verifier.runs == 1
    clock.advance(1)
    assert isinstance(login(auth, "right-pw"), Identity)
    assert verifier.runs == 2


def test_a_remembered_failure_lasts_30s(tmp_path, pw_hash):
    """A device retrying a stale password costs one argon2 per 30 s."""
    auth, clock, verifier = setup(tmp_path, pw_hash)
    failure = login(auth, "stale-pw")
    assert failure.check(UnauthorizedLogin) and str(failure.value) == "wrong password"
    remembered = login(auth, "stale-pw")
    assert remembered.check(UnauthorizedLogin) and str(remembered.value) == "wrong password (remembered)"
    clock.advance(29)
    assert login(auth, "stale-pw").check(UnauthorizedLogin)
    assert verifier.runs == 1
    clock.advance(1)
    assert login(auth, "stale-pw").check(UnauthorizedLogin)
    assert verifier.runs == 2


def test_a_remembered_failure_still_counts_toward_lockout(tmp_path, pw_hash):
    auth, _clock, verifier = setup(tmp_path, pw_hash, max_failures_per_user=3, max_failures_per_source=100)
    for ip in ("10.9.9.1", "10.9.9.2", "10.9.9.3"):
        assert login(auth, "stale-pw", ip=ip).check(UnauthorizedLogin)
    assert verifier.runs == 1
    # Three failures (two of them remembered) locked the account: even the right password is refused.
    failure = login(auth, "right-pw", ip="10.9.9.4")
    assert failure.check(LockedOut) and str(failure.value) == "AUTH locked out for this user"
    assert verifier.runs == 1


def test_a_remembered_failure_does_not_hide_the_right_password(tmp_path, pw_hash):
    auth, _clock, _verifier = setup(tmp_path, pw_hash)
    assert login(auth, "wrong").check(UnauthorizedLogin)
    assert isinstance(login(auth, "right-pw"), Identity)


def test_a_locked_account_is_refused_even_with_a_remembered_password(tmp_path, pw_hash):
    auth, clock, verifier = setup(tmp_path, pw_hash, max_failures_per_user=3, max_failures_per_source=100)
    assert isinstance(login(auth, "right-pw"), Identity)
    for n in range(3):
        assert login(auth, f"guess-{n}", ip=f"192.0.2.{n}").check(UnauthorizedLogin)
    failure = login(auth, "right-pw", ip="10.1.2.3")
    assert failure.check(LockedOut) and str(failure.value) == "AUTH locked out for this user"
    clock.advance(900)
    assert isinstance(login(auth, "right-pw"), Identity)
    assert verifier.runs == 4  # the right password was verified once, before the lockout


def test_a_locked_source_is_refused_even_with_a_remembered_password(tmp_path, pw_hash):
    auth, _clock, _verifier = setup(tmp_path, pw_hash, max_failures_per_source=2)
    login(auth, "right-pw", ip="192.0.2.9")
    login(auth, "x1", user="other", ip="192.0.2.9")
    login(auth, "x2", user="other", ip="192.0.2.9")
    assert login(auth, "right-pw", ip="192.0.2.9").check(LockedOut)


def test_remote_ip_ranges_apply_to_a_remembered_login(tmp_path, pw_hash):
    auth, _clock, verifier = setup(tmp_path, pw_hash, ranges=["10.0.0.0/8"], max_failures_per_source=100)
    assert isinstance(login(auth, "right-pw", ip="10.1.2.3"), Identity)
    outside = login(auth, "right-pw", ip="192.0.2.1")
    assert outside.check(UnauthorizedLogin) and str(outside.value) == "outside the user's networks"
    assert verifier.runs == 1
    assert login(auth, "right-pw", ip="192.0.2.1").check(UnauthorizedLogin)
    # And the other way round: verified from outside first, then remembered from inside.
    (tmp_path / "second").mkdir()
    auth2, _, verifier2 = setup(tmp_path / "second", pw_hash, ranges=["10.0.0.0/8"])
    assert login(auth2, "right-pw", ip="192.0.2.1").check(UnauthorizedLogin)
    assert isinstance(login(auth2, "right-pw", ip="10.1.2.3"), Identity)
    assert verifier2.runs == 1


def cli(monkeypatch, cfg, *args, password=None):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{password}\n" if password else ""))
    return main(["--config", str(cfg), "user", *args, *(["--password-stdin"] if password else [])])


@pytest.fixture
def cli_setup(tmp_path, monkeypatch, pw_hash):
    var = tmp_path / "var"
    var.mkdir()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(default_config_path().read_text().replace('var_dir = "var"', f'var_dir = "{var}"'))
    auth, _clock, verifier = setup(var, pw_hash)
    return auth, verifier, lambda *a, **k: cli(monkeypatch, cfg, *a, **k)


def test_user_passwd_is_seen_at_the_next_login(cli_setup):
    auth, verifier, run = cli_setup
    assert isinstance(login(auth, "right-pw"), Identity)
    assert run("passwd", USER, password="new-pw") == 0
    assert login(auth, "right-pw").check(UnauthorizedLogin)
    assert isinstance(login(auth, "new-pw"), Identity)
    assert verifier.runs == 3


def test_user_remove_is_seen_at_the_next_login(cli_setup):
    auth, _verifier, run = cli_setup
    assert isinstance(login(auth, "right-pw"), Identity)
    assert run("remove", USER) == 0
    failure = login(auth, "right-pw")
    assert failure.check(UnauthorizedLogin) and str(failure.value) == "no such user"


def test_a_new_send_as_is_seen_at_the_next_login(tmp_path, pw_hash):
    auth, _clock, verifier = setup(tmp_path, pw_hash)
    assert login(auth, "right-pw").send_as.patterns == (USER, "*@apps.corp.example")
    UsersFile(tmp_path / "users.toml").save([UserRecord(USER, pw_hash)])
    assert login(auth, "right-pw").send_as.patterns == (USER,)
    assert verifier.runs == 2


def test_a_verification_that_straddles_a_change_of_the_file_is_not_remembered(tmp_path, pw_hash):
    users = UsersFile(tmp_path / "users.toml")
    users.save([UserRecord(USER, pw_hash)])
    held = []

    def slow(f, *args):
        d = Deferred()
        held.append((d, f, args))
        return d

    auth = build_auth(AuthConfig(users_file=users.path), task.Clock(), slow)
    out = []
    auth.authenticate(USER, "right-pw", "10.1.2.3").addBoth(out.append)
    # `exgateway user remove` while the old password is being verified:
    UsersFile(users.path).save([])
    d, f, args = held.pop()
    d.callback(f(*args))
    assert isinstance(out[0], Identity)  # it began before the removal
    auth.authenticate(USER, "right-pw", "10.1.2.3").addBoth(out.append)
    # Not remembered: verified again (an unknown name costs an argon2 too, so timing tells nothing) and refused.
    d, f, args = held.pop()
    assert args[0] is None
    d.errback(fail_now(f, args))
    assert out[1].check(UnauthorizedLogin) and str(out[1].value) == "no such user"


def fail_now(f, args):
    try:
        f(*args)
    except UnauthorizedLogin as e:
        return e
    raise AssertionError("the check passed")


def test_credential_cache_ttl_0s_verifies_every_login(tmp_path, pw_hash):
    auth, _clock, verifier = setup(tmp_path, pw_hash, credential_cache_ttl=0.0)
    login(auth, "right-pw")
    login(auth, "right-pw")
    assert verifier.runs == 2 and auth.cache is None


ALICE = Identity("Alice", SenderPatterns.of(["alice@corp.example"]), (), "ldap", "ldap:uid=alice,dc=corp")


def test_a_directory_answer_is_remembered_with_the_name_as_typed_and_an_outage_never():
    clock = task.Clock()
    cache = CredentialCache(clock)
    key, generation, answer = cache.lookup("Alice", "pw")
    assert answer is None
    cache.remember(key, generation, ALICE)
    assert cache.lookup("ALICE", "pw")[2] == Identity("ALICE", ALICE.send_as, (), "ldap", ALICE.canonical)
    # An outage is never remembered (AuthService only remembers UnauthorizedLogin).
    from gateway.auth.portal import Authenticator
    from gateway.auth.service import AuthService
    from gateway.auth.throttle import AuthThrottle

    class Down:
        credentialInterfaces = ()

        def requestAvatarId(self, credentials):
            return fail(DirectoryUnavailable("timeout"))

    service = AuthService(Authenticator([("ldap", Down())]), AuthThrottle(clock, 10, 20, 900, 900), AuthConfig(), CredentialCache(clock))
    assert result(service.authenticate("bob", "pw", "10.1.2.3")).check(DirectoryUnavailable)
    assert len(service.cache) == 0


def test_the_cache_is_bounded_and_forgets_the_least_recently_used():
    clock = task.Clock()
    cache = CredentialCache(clock, size=3, negative_size=2)
    ids = {}
    for n in range(3):
        key, generation, _ = cache.lookup(f"u{n}", "pw")
        ids[n] = Identity(f"u{n}", SenderPatterns.of([]), (), "users_file")
        cache.remember(key, generation, ids[n])
    assert cache.lookup("u0", "pw")[2] == ids[0]  # u0 used again: u1 is now the oldest
    key, generation, _ = cache.lookup("u3", "pw")
    cache.remember(key, generation, Identity("u3", SenderPatterns.of([]), (), "users_file"))
    assert cache.lookup("u1", "pw")[2] is None
    assert cache.lookup("u0", "pw")[2] == ids[0]
    # A spray of wrong passwords fills the failures' own table, never evicting a success.
    for n in range(50):
        key, generation, _ = cache.lookup("u0", f"guess{n}")
        cache.remember(key, generation, UnauthorizedLogin("wrong password"))
    assert len(cache) == 3 + 2
    assert cache.lookup("u0", "pw")[2] == ids[0]


def test_the_key_holds_no_password_and_depends_on_the_process_secret():
    clock = task.Clock()
    a, b = CredentialCache(clock), CredentialCache(clock)
    assert a.key("u", "secret-pw") != b.key("u", "secret-pw")
    assert b"secret-pw" not in a.key("u", "secret-pw")
    assert a.key("ab", "c") != a.key("a", "bc")
    assert a.key("User", "pw") == a.key("user", "pw")


def test_a_file_that_is_removed_empties_the_cache(tmp_path, pw_hash):
    auth, _clock, _verifier = setup(tmp_path, pw_hash)
    login(auth, "right-pw")
    Path(tmp_path / "users.toml").unlink()
    assert login(auth, "right-pw").check(UnauthorizedLogin)
