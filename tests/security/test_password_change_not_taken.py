"""
Issue 16 item 7: `exgateway user passwd|remove` run as root left a 0600
root-owned users file the service (running as its own user) could not read;
the service kept the old accounts, recorded the new file's stamp, and the
old password worked until a restart. Now the CLI keeps the file's owner,
group and mode, and a service that cannot read the file lets nobody in
until it can, then picks the change up.
"""

import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from twisted.cred.credentials import UsernamePassword

from gateway.admin.cli import main
from gateway.auth.users import UserRecord, UsersFile, UsersFileChecker, hash_password
from gateway.config import default_config_path

SERVICE_UID = SERVICE_GID = 65534  # nobody / nogroup: the service's user after twistd drops privileges

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack is the CLI run as root")


def as_service_user(action) -> str:
    """Run `action()` in a child process with the service's uid/gid; its result (or error) as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(SERVICE_GID)
            os.setuid(SERVICE_UID)
            out = str(action())
        except BaseException as e:  # reported to the parent
            out = f"error: {type(e).__name__}: {e}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def cli(cfg, *args, password=None, monkeypatch=None):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{password}\n" if password else ""))
    return main(["--config", str(cfg), "user", *args, *(["--password-stdin"] if password else [])])


def login(path, name, password) -> str:
    checker = UsersFileChecker(UsersFile(path), lambda f, *a: f(*a))
    out = []
    checker.requestAvatarId(UsernamePassword(name.encode(), password.encode())).addBoth(out.append)
    return "ok" if not hasattr(out[0], "check") else out[0].type.__name__


@pytest.fixture
def setup():
    # Not under pytest's tmp_path: its parent is private to root, and the service's user must reach var/.
    top = Path(tempfile.mkdtemp(prefix="exgw-users-"))
    top.chmod(0o755)
    var = top / "var"
    var.mkdir()
    os.chown(var, SERVICE_UID, SERVICE_GID)
    cfg = top / "gw.toml"
    cfg.write_text(default_config_path().read_text().replace('var_dir = "var"', f'var_dir = "{var}"'))
    yield cfg, var / "users.toml"
    shutil.rmtree(top)


def test_root_cli_keeps_the_files_owner_group_and_mode(setup, monkeypatch, capsys):
    cfg, path = setup
    assert cli(cfg, "add", "app1", password="old-pw", monkeypatch=monkeypatch) == 0
    # A new file belongs to the owner of its directory (the service's var_dir), mode 0600.
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (SERVICE_UID, SERVICE_GID, 0o600)
    os.chown(path, SERVICE_UID, 0)
    path.chmod(0o640)
    assert cli(cfg, "passwd", "app1", password="new-pw", monkeypatch=monkeypatch) == 0
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (SERVICE_UID, 0, 0o640)
    os.chown(path, SERVICE_UID, SERVICE_GID)
    assert cli(cfg, "add", "app2", password="pw2", monkeypatch=monkeypatch) == 0
    assert cli(cfg, "remove", "app2", monkeypatch=monkeypatch) == 0
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (SERVICE_UID, SERVICE_GID, 0o640)
    # The service's user reads the rewritten file: the new password works, the old one does not.
    assert as_service_user(lambda: login(path, "app1", "new-pw")) == "ok"
    assert as_service_user(lambda: login(path, "app1", "old-pw")) == "WrongPassword"
    assert not list(path.parent.glob("*.tmp"))


def test_a_file_the_service_cannot_read_lets_nobody_in_until_it_can(setup):
    """The running service's UsersFile: every change taken, an unreadable file fails closed and is retried."""
    _cfg, path = setup
    users = UsersFile(path)
    users.save([UserRecord("app1", hash_password("old-pw"))])
    os.chown(path, SERVICE_UID, SERVICE_GID)

    def scenario():
        results = [login_with(users, "app1", "old-pw")]
        # The admin (root) rewrites it the old way: root-owned, 0600, unreadable to the service.
        os.seteuid(0)
        users_root = UsersFile(path)
        users_root.save([UserRecord("app1", hash_password("new-pw"))])
        os.chown(path, 0, 0)
        os.seteuid(SERVICE_UID)
        results.append(login_with(users, "app1", "old-pw"))
        results.append(login_with(users, "app1", "new-pw"))
        os.seteuid(0)
        os.chown(path, SERVICE_UID, SERVICE_GID)
        os.seteuid(SERVICE_UID)
        results.append(login_with(users, "app1", "old-pw"))
        results.append(login_with(users, "app1", "new-pw"))
        return results

    assert as_service_effective_user(scenario) == str(["ok", "UnauthorizedLogin", "UnauthorizedLogin", "WrongPassword", "ok"])


def login_with(users, name, password) -> str:
    checker = UsersFileChecker(users, lambda f, *a: f(*a))
    out = []
    checker.requestAvatarId(UsernamePassword(name.encode(), password.encode())).addBoth(out.append)
    return "ok" if not hasattr(out[0], "check") else out[0].type.__name__


def as_service_effective_user(action) -> str:
    """As as_service_user, but only the effective uid changes, so the child can act as root (the admin) in between."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setegid(SERVICE_GID)
            os.seteuid(SERVICE_UID)
            out = str(action())
        except BaseException as e:  # reported to the parent
            out = f"error: {type(e).__name__}: {e}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out
