"""
Attack: a local user on a gateway node reads mail, keys and logs, or makes
the CLI write through a planted symlink. Under `twistd -n` the umask is
usually 022; everything the gateway makes must come out private anyway.
"""

import datetime
import os
import stat

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from gateway.admin.health import NodeState
from gateway.auth.users import UserRecord, UsersFile
from gateway.deliver.maildir import MaildirDelivery
from gateway.envelope import Envelope, Recipient
from gateway.files import UnsafePathError
from gateway.logs.rolling import RollingLog
from gateway.queue.entry import StoredBody
from gateway.queue.format import trailer
from gateway.queue.store import QueueStore
from gateway.tls.store import CertificateStore, make_self_signed


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def sync_runner(f, *args):
    return succeed(f(*args))


@pytest.fixture(autouse=True)
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_queue_files_and_directories_are_owner_only(tmp_path):
    store = QueueStore(tmp_path / "var" / "queue", sync_runner)
    store.prepare()
    entry = store.create("1001")
    entry.write(b"Subject: payroll\r\n\r\nsecret\r\n")
    env = Envelope("1001", 1001, "<m@x>", "s@x.example", (Recipient("a@corp.example"),), 1.0, 30)
    store.commit(entry, env)
    store.update(env)  # a delivery attempt rewrites the envelope beside the body
    modes = {p.name: mode(p) for p in store.directory.iterdir()}
    assert modes == {"1001.eml": 0o600, "1001.json": 0o600, "corrupt": 0o700, "failed": 0o700} | {
        name: 0o600 for name in modes if name.startswith("spare")
    }
    assert mode(store.directory) == 0o700 and mode(tmp_path / "var") == 0o700


def test_maildir_messages_and_folders_are_owner_only(tmp_path):
    body = tmp_path / "q.eml"
    body.write_bytes(b"Subject: x\r\n\r\nhi\r\n" + trailer(b'{"queue_id": "q"}', 18))
    clock = Clock()
    clock.advance(1_795_000_000)
    MaildirDelivery(tmp_path / "mail", sync_runner, clock).deliver(None, ["alice@corp.example"], StoredBody(body, size=18))
    box = tmp_path / "mail" / "corp.example" / "alice"
    (message,) = (box / "new").iterdir()
    assert mode(message) == 0o600
    assert [mode(p) for p in (tmp_path / "mail", tmp_path / "mail" / "corp.example", box, box / "new", box / "tmp", box / "cur")] == [0o700] * 6


def test_logs_are_0640_in_0750_directories(tmp_path):
    clock = Clock()
    clock.advance(1_795_000_000)
    log = RollingLog(tmp_path / "logs" / "ProtocolLog", "RECV", "SMTP Receive Protocol Log", "a", clock, 10_000, 86400.0)
    log.record(clock.seconds(), lambda now: "x\r\n")
    log.close()
    (f,) = (tmp_path / "logs" / "ProtocolLog").iterdir()
    assert (mode(f), mode(tmp_path / "logs" / "ProtocolLog"), mode(tmp_path / "logs")) == (0o640, 0o750, 0o750)


def test_certificate_keys_are_owner_only(tmp_path):
    now = datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
    stored = CertificateStore(tmp_path / "certs").write(make_self_signed("CN=mail.corp.example", ("mail.corp.example",), now))
    assert (mode(stored.path), mode(tmp_path / "certs")) == (0o600, 0o700)


def test_the_users_file_is_never_written_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    os.symlink(victim, tmp_path / "users.toml")
    with pytest.raises(UnsafePathError):
        UsersFile(tmp_path / "users.toml").save([UserRecord("scanner1", "$argon2id$x")])
    assert victim.read_text() == "do not touch\n"


def test_the_drain_flag_is_never_written_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    os.symlink(victim, tmp_path / "draining")
    with pytest.raises(UnsafePathError):
        NodeState(tmp_path / "draining").drain()
    assert victim.read_text() == "do not touch\n"
    NodeState(tmp_path / "draining").undrain()
    assert not os.path.lexists(tmp_path / "draining") and victim.exists()
    NodeState(tmp_path / "draining").drain()
    assert mode(tmp_path / "draining") == 0o600


def test_an_exported_message_is_owner_only_and_never_written_through_a_symlink(tmp_path, monkeypatch, capsys):
    from argparse import Namespace

    from gateway.admin import queues

    monkeypatch.setattr(queues, "_first_found", lambda config, method, path, **kw: b"Subject: payroll\r\n\r\nsecret\r\n")
    out = tmp_path / "message.eml"
    assert queues._export(Namespace(id="42", output=str(out)), None) == 0
    assert out.read_bytes().startswith(b"Subject: payroll") and mode(out) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    os.symlink(victim, tmp_path / "link.eml")
    assert queues._export(Namespace(id="42", output=str(tmp_path / "link.eml")), None) == 1
    assert capsys.readouterr().err == f"exgateway: cannot write {tmp_path / 'link.eml'}: Too many levels of symbolic links\n"
    assert victim.read_text() == "do not touch\n"
