"""
Issue 22 item 1: argon2 runs only in the verify pool's threads, at most its
size at once, never in the reactor thread or the shared pool the queue
writes through.
"""

import threading

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, succeed

from gateway.auth import users as users_module
from gateway.auth.identity import Identity
from gateway.auth.service import build_auth
from gateway.auth.users import UserRecord, UsersFile, hash_password
from gateway.auth.verifypool import VerifyPool
from gateway.config import AuthConfig


class WatchedHasher:
    """The real hasher, recording where and how many at once each verification runs."""

    def __init__(self, real):
        self.real = real
        self.lock = threading.Lock()
        self.threads = []
        self.running = self.most = 0

    def verify(self, hash_, password):
        with self.lock:
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert VerifyPool.in_pool(), f"argon2 ran in {threading.current_thread().name}"
            return self.real.verify(hash_, password)
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password):
        return self.real.hash(password)


@pytest.fixture
def pool():
    pool = VerifyPool(reactor, threads=2)
    pool.startService()
    yield pool
    pool.stopService()


@pytest_twisted.ensureDeferred
async def test_argon2_runs_only_in_the_verify_pool_two_at_a_time(tmp_path, pool, monkeypatch):
    users = UsersFile(tmp_path / "users.toml")
    users.save([UserRecord(f"app{n}", hash_password(f"pw{n}")) for n in range(6)])
    hasher = WatchedHasher(users_module.HASHER)
    monkeypatch.setattr(users_module, "HASHER", hasher)
    auth = build_auth(AuthConfig(users_file=users.path, max_failures_per_source=100), reactor, pool.run)
    logins = [auth.authenticate(f"app{n}", f"pw{n}", "10.1.2.3") for n in range(6)]
    logins.append(auth.authenticate("nobody", "pw", "10.1.2.3").addErrback(lambda f: f.value))
    answers = await gatherResults(logins)
    assert [a.name for a in answers[:6]] == [f"app{n}" for n in range(6)]
    assert str(answers[6]) == "no such user"
    assert len(hasher.threads) == 7
    assert all(name.startswith("PoolThread-exgateway-verify-") for name in hasher.threads), hasher.threads
    assert hasher.most <= 2
    # Remembered: the next round of the same logins runs no argon2 at all.
    again = await gatherResults([auth.authenticate(f"app{n}", f"pw{n}", "10.1.2.3") for n in range(6)])
    assert all(isinstance(a, Identity) for a in again) and len(hasher.threads) == 7


def test_the_gateway_verifies_passwords_in_its_verify_pool(tmp_path, monkeypatch):
    """build_service wires the frontend's AUTH to a VerifyPool among its services (started and stopped with them)."""
    from gateway.config import default_config_path, load_config
    from gateway.reload import ReloadOnHangup
    from gateway.service import build_service

    cfg = tmp_path / "gw.toml"
    cfg.write_text(default_config_path().read_text().replace('var_dir = "var"', f'var_dir = "{tmp_path}"'))
    UsersFile(tmp_path / "users.toml").save([UserRecord("app1", hash_password("pw1"))])
    ran = []
    monkeypatch.setattr(VerifyPool, "run", lambda self, f, *args: ran.append(self) or succeed(f(*args)))
    top = build_service(load_config(cfg), "all", reactor)  # assembled only: nothing is started
    pools = [s for s in top if isinstance(s, VerifyPool)]
    assert len(pools) == 1 and pools[0].threads >= 2
    auth = next(s for s in top if isinstance(s, ReloadOnHangup)).live.auth
    out = []
    auth.authenticate("app1", "pw1", "127.0.0.1").addBoth(out.append)
    assert out[0].name == "app1" and ran == pools
