"""
The users file: local accounts for devices and apps, with argon2id hashes.

    [[users]]
    name = "scanner01@corp.example"
    password = "$argon2id$v=19$m=65536,t=3,p=4$..."
    send_as = ["*@scan.corp.example"]          # besides its own name, if that is an address
    remote_ip_ranges = ["10.20.0.0/16"]       # optional: where it may log in from

`exgateway user add|remove|passwd|list` manage it; it is re-read when it
changes, so a new account (or a removal, or a new password) works without a
reload. A file the service cannot read or parse fails closed: it is reported
in the log and no account works until it is fixed, so a removed account or
an old password never keeps working because the new file could not be read
(say the CLI, run as root, had left it unreadable to the service's user).
Writes are atomic (temporary file, fsync, rename) and keep the file's
owner, group and mode; a new file is 0600 and belongs to the owner of its
directory (the service's var_dir), not to whoever ran the command.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import argon2
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import fail, maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from gateway.auth.identity import Identity, WrongPassword, text_credentials
from gateway.auth.sendas import SenderPatterns, parse_pattern
from gateway.connectors import IPRange, parse_range
from gateway.files import write_private_atomically

log = Logger(namespace="exgateway.auth")

HASHER = argon2.PasswordHasher.from_parameters(argon2.profiles.RFC_9106_LOW_MEMORY)
USER_KEYS = {"name", "password", "send_as", "remote_ip_ranges"}


class UsersFileError(ValueError):
    pass


@dataclass(frozen=True)
class UserRecord:
    name: str
    password_hash: str
    send_as: tuple[str, ...] = ()
    remote_ip_ranges: tuple[IPRange, ...] = ()

    def identity(self) -> Identity:
        own = (self.name,) if "@" in self.name else ()
        return Identity(self.name, SenderPatterns.of(own + self.send_as), self.remote_ip_ranges, "users_file", self.name.lower())


def hash_password(password: str) -> str:
    if not password:
        raise UsersFileError("an empty password is not allowed")
    return HASHER.hash(password)


def parse_users(text: str, file: str) -> dict[str, UserRecord]:
    """The file's users by lower-cased name; UsersFileError names file, entry and key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsersFileError(f"{file}: {e}") from None
    unknown = set(raw) - {"users"}
    if unknown:
        raise UsersFileError(f"{file}: unknown key {min(unknown)!r} (the file holds [[users]] entries)")
    users: dict[str, UserRecord] = {}
    entries = raw.get("users", [])
    if not isinstance(entries, list):
        raise UsersFileError(f"{file}: users must be an array of tables ([[users]])")
    for i, entry in enumerate(entries):
        where = f"{file}: users[{i}]"
        extra = set(entry) - USER_KEYS
        if extra:
            raise UsersFileError(f"{where}: unknown key {min(extra)!r} (known: {', '.join(sorted(USER_KEYS))})")
        name, password = entry.get("name"), entry.get("password")
        if not isinstance(name, str) or not name.strip():
            raise UsersFileError(f"{where}.name: required")
        if not isinstance(password, str) or not password.startswith("$argon2"):
            raise UsersFileError(f"{where}.password: must be an argon2 hash (set it with `exgateway user passwd {name}`)")
        try:
            send_as = tuple(parse_pattern(p) for p in entry.get("send_as", []))
            ranges = tuple(parse_range(r) for r in entry.get("remote_ip_ranges", []))
        except (ValueError, TypeError, AttributeError) as e:
            raise UsersFileError(f"{where} ({name}): {e}") from None
        if name.lower() in users:
            raise UsersFileError(f"{where}.name: {name!r} is listed twice")
        users[name.lower()] = UserRecord(name, password, send_as, ranges)
    return users


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=True)


def format_users(users: list[UserRecord]) -> str:
    out = ["# exgateway users. Manage with `exgateway user add|remove|passwd|list`.\n"]
    for u in users:
        out.append("\n[[users]]\n")
        out.append(f"name = {_toml_string(u.name)}\n")
        out.append(f"password = {_toml_string(u.password_hash)}\n")
        if u.send_as:
            out.append(f"send_as = [{', '.join(_toml_string(p) for p in u.send_as)}]\n")
        if u.remote_ip_ranges:
            out.append(f"remote_ip_ranges = [{', '.join(_toml_string(str(r)) for r in u.remote_ip_ranges)}]\n")
    return "".join(out)


class UsersFile:
    """The file, re-read whenever its size or modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._users: dict[str, UserRecord] = {}
        self._stamp: tuple[int, int, int] | None = None
        # Called (no arguments) whenever the accounts are re-read, go or become unreadable:
        # the credential cache (gateway/auth/credcache.py) forgets what it verified.
        self.on_change: list = []

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def users(self) -> dict[str, UserRecord]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            if self._stamp is not None:
                self._changed()
            self._users, self._stamp = {}, None
            return self._users
        if stamp != self._stamp:
            self._changed()
            try:
                self._users = parse_users(self.path.read_text("utf-8"), str(self.path))
            except OSError as e:
                # Not recorded as read: tried again at the next login, in case the owner or mode is fixed.
                self._users, self._stamp = {}, None
                log.error("users file {path} cannot be read, no account can log in until it is fixed: {error}",
                          path=str(self.path), error=e.strerror or str(e))
                return self._users
            except (UsersFileError, UnicodeDecodeError) as e:
                self._users = {}
                log.error("users file is broken, no account can log in until it is fixed: {error}", error=str(e))
            self._stamp = stamp
        return self._users

    def load_strict(self) -> dict[str, UserRecord]:
        """For the CLI: read now, and fail loudly on a broken file."""
        if not self.path.exists():
            return {}
        return parse_users(self.path.read_text("utf-8"), str(self.path))

    def save(self, users: list[UserRecord]) -> None:
        # Owner, group and mode carry over (gateway/files.py): root running
        # `exgateway user ...` must not lock the service user out.
        existed = self.path.exists()
        write_private_atomically(self.path, format_users(users).encode("utf-8"))
        if not existed and os.geteuid() == 0:
            # A new file belongs to the owner of its directory (the service's
            # var_dir), not to root, or the service could not read it.
            st = os.stat(self.path.parent)
            os.chown(self.path, st.st_uid, st.st_gid, follow_symlinks=False)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so an unknown name costs as
    long as a wrong password and timing does not tell which names exist."""
    return HASHER.hash("exgateway-no-such-user")


def _verify(record: UserRecord | None, password: str) -> Identity:
    try:
        HASHER.verify(record.password_hash if record else _dummy_hash(), password)
    except (argon2.exceptions.VerifyMismatchError, argon2.exceptions.InvalidHashError):
        # The same work either way (timing tells nothing); the log is told which.
        raise UnauthorizedLogin("wrong password" if record is not None else "no such user") from None
    if record is None:
        raise UnauthorizedLogin("no such user")
    return record.identity()


def _check(record: UserRecord | None, password: str) -> Identity:
    try:
        return _verify(record, password)
    except UnauthorizedLogin:
        if record is not None:
            raise WrongPassword(record.name.lower()) from None
        raise


@implementer(ICredentialsChecker)
class UsersFileChecker:
    """twisted.cred checker over the users file; argon2 runs in a thread (it costs ~50 ms of CPU by design)."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users_file: UsersFile, run_in_thread) -> None:
        self.users_file = users_file
        self.run_in_thread = run_in_thread

    def requestAvatarId(self, credentials):
        try:
            name, password = text_credentials(credentials)
        except UnauthorizedLogin:
            return fail()
        record = self.users_file.users().get(name.lower())
        return maybeDeferred(self.run_in_thread, _check, record, password)
