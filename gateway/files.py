"""
Private files and directories, whatever the umask.

The gateway writes mail, keys, credentials and logs. Under `twistd -n` with
the usual umask 022 a plain `open()` or `mkdir()` makes them readable by every
local user, so everything the gateway creates goes through here with an
explicit mode: the umask can only take bits away from it, never add any.

`write_private_atomically` is the one way the CLI replaces a file (users
file, drain flag, certificate store): a temporary sibling created with
O_EXCL|O_NOFOLLOW (a planted file or symlink makes it fail instead of being
written through), fsynced, renamed over the target, directory fsynced. A
target that is itself a symlink is refused: another local user who can write
the directory could otherwise point it at a file of theirs or of root's.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

# Mail, keys and credentials: the service user only.
PRIVATE_FILE = 0o600
PRIVATE_DIRECTORY = 0o700
# Logs: the service user writes, an admin group may read.
LOG_FILE = 0o640
LOG_DIRECTORY = 0o750


class UnsafePathError(OSError):
    """A path the gateway refuses to write through (a symlink, or not a regular file)."""


def make_directory(path: Path | str, mode: int = PRIVATE_DIRECTORY) -> None:
    """
    Create `path` and any missing parents with `mode`. Directories that
    already exist are left as the admin made them; only the ones created here
    get the mode (pathlib's parents=True would give intermediate ones 0777
    less the umask).
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue
        # mkdir's mode is filtered by the umask; a umask of 0 must not widen it and 077 must not narrow it.
        os.chmod(directory, mode, follow_symlinks=False)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))


def create_new(path: Path | str, mode: int = PRIVATE_FILE) -> int:
    """A new file opened for writing with exactly `mode`; FileExistsError if the name is taken, never follows a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def fsync_directory(path: Path | str) -> None:
    """Make a directory's entries durable (a file created, renamed or removed in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_atomically(path: Path | str, data: bytes, *, mode: int = PRIVATE_FILE, keep_owner: bool = True) -> None:
    """
    Replace `path` with `data` so that a reader sees the old or the new
    contents, never a mix, and a crash leaves one of the two.

    With keep_owner (the default) an existing file's owner, group and
    permission bits carry over (world bits dropped): `exgateway user passwd`
    run as root must leave the users file readable by the service user it
    was made for. A new file gets `mode` and the writer's owner; its parent
    directories are created 0700.
    """
    path = Path(path)
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        current = None
    if current is not None and not stat.S_ISREG(current.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(current.st_mode) else "not a regular file"
        raise UnsafePathError(errno.ELOOP, f"refusing to write {path}: it is {kind}", str(path))
    make_directory(path.parent)
    if current is not None and keep_owner:
        mode = stat.S_IMODE(current.st_mode) & 0o770
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = create_new(tmp, mode)
    try:
        try:
            if current is not None and keep_owner and (current.st_uid, current.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, current.st_uid, current.st_gid)
                # fchown clears set-id bits and some systems reset the mode with it.
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(path.parent)


def remove_file(path: Path | str) -> bool:
    """Remove `path` if present (a symlink is removed itself, never followed); True if something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
