"""gateway.files: modes that do not depend on the umask, and atomic writes that refuse symlinks."""

import os
import stat

import pytest

from gateway.files import UnsafePathError, create_new, make_directory, write_private_atomically


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_directories_and_their_parents_get_the_mode_whatever_the_umask(tmp_path, umask):
    """umask 0 must not widen a private directory, and pathlib's parents=True would have made the middle ones 0777 & ~umask."""
    make_directory(tmp_path / "a" / "b" / "c", 0o750)
    for p in ("a", "a/b", "a/b/c"):
        assert mode(tmp_path / p) == 0o750


def test_an_existing_directory_is_left_as_the_admin_made_it(tmp_path):
    (tmp_path / "var").mkdir(mode=0o755)
    os.chmod(tmp_path / "var", 0o755)
    make_directory(tmp_path / "var" / "queue")
    assert mode(tmp_path / "var") == 0o755 and mode(tmp_path / "var" / "queue") == 0o700


def test_a_file_in_the_way_of_a_directory_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_directory(tmp_path / "f")


def test_create_new_is_exclusive_exact_and_never_follows_a_symlink(tmp_path, umask):
    os.close(create_new(tmp_path / "n", 0o640))
    assert mode(tmp_path / "n") == 0o640
    with pytest.raises(FileExistsError):
        create_new(tmp_path / "n")
    (tmp_path / "target").write_text("victim")
    os.symlink(tmp_path / "target", tmp_path / "link")
    with pytest.raises(FileExistsError):
        create_new(tmp_path / "link")
    assert (tmp_path / "target").read_text() == "victim"


def test_write_private_atomically_makes_a_0600_file_in_0700_parents(tmp_path, umask):
    target = tmp_path / "etc" / "users.toml"
    write_private_atomically(target, b"data\n")
    assert target.read_bytes() == b"data\n"
    assert mode(target) == 0o600 and mode(tmp_path / "etc") == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["users.toml"]


def test_write_private_atomically_refuses_a_symlinked_target(tmp_path):
    """A local user who can write the directory plants users.toml -> a file of root's: the write must not go through it."""
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    link = tmp_path / "users.toml"
    os.symlink(victim, link)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        write_private_atomically(link, b"owned\n")
    assert victim.read_text() == "root:secret\n" and os.path.islink(link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shadow", "users.toml"]


def test_write_private_atomically_keeps_an_existing_files_mode_without_world_bits(tmp_path):
    """An admin's 0640 (group exgateway may read) survives a rewrite; a stray world bit does not."""
    target = tmp_path / "users.toml"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_private_atomically(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640
    os.chmod(target, 0o600)
    write_private_atomically(target, b"newer", mode=0o644, keep_owner=False)
    assert mode(target) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "users.toml"
    target.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_private_atomically(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["users.toml"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_root_rewriting_a_service_users_file_keeps_its_owner_and_group(tmp_path):
    target = tmp_path / "users.toml"
    target.write_text("old")
    os.chown(target, 65534, 65534)
    os.chmod(target, 0o640)
    write_private_atomically(target, b"new")
    st = os.stat(target)
    assert (st.st_uid, st.st_gid, mode(target)) == (65534, 65534, 0o640)
