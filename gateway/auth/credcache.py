"""
The verified-credential cache: verify a password once, then remember it.

Devices and apps log in once per message; each login costs an argon2id
verification (64 MiB, ~0.1 s of CPU) or an LDAP search and bind. Dovecot's
auth cache and Exchange's credential cache remember a verified login for a
while; so does this one. It replaces only the *verification* (argon2, the
LDAP bind): lockouts, `remote_ip_ranges` and send-as are applied by
AuthService on every login, cached or not.

The key is HMAC-SHA256(process secret, user name + password): the secret
comes from os.urandom at start-up and never leaves the process, so the cache
holds no password, and no plain fast hash of one that could be matched
against a list of leaked passwords or another system's hashes. The user name is
lower-cased (the same for PLAIN and LOGIN and for every capitalisation) but
never stripped: a name with white space around it is refused before the cache
is asked, as the backends refuse it; the password is as sent, so a
different password never hits.

Successes are kept `ttl` (default 1 h), failures (wrong password, no such
user) a short `negative_ttl`: a device with a stale password retrying every
few seconds costs one verification per `negative_ttl`, and a negative hit is
still a failure (counted toward lockout and tarpitted by the protocol).
Failures have their own, smaller LRU so a spray of wrong passwords cannot
evict the devices' successes. A temporary failure (directory down) is never
kept. Everything is dropped when the users file changes (an account added,
removed or given a new password: `exgateway user ...`) or at a reload; an
LDAP change shows within the TTL, as with Dovecot's cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from twisted.cred.error import UnauthorizedLogin

from gateway.auth.identity import Identity, WrongPassword

if TYPE_CHECKING:
    from gateway.auth.users import UsersFile

DEFAULT_TTL = 3600.0
DEFAULT_NEGATIVE_TTL = 30.0
DEFAULT_SIZE = 10_000
DEFAULT_NEGATIVE_SIZE = 1_000


class _LRU:
    """Entries (expiry, value) in least-recently-used order, at most `size` of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[bytes, tuple[float, object]] = OrderedDict()

    def get(self, key: bytes, now: float):
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def put(self, key: bytes, value, expires: float) -> None:
        self.entries[key] = (expires, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def pop(self, key: bytes) -> None:
        self.entries.pop(key, None)


class CredentialCache:
    """
    `lookup` answers an Identity (a remembered success), an UnauthorizedLogin
    (a remembered failure: raise it) or None (verify, then `remember`).
    """

    def __init__(
        self, clock, ttl: float = DEFAULT_TTL, negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        size: int = DEFAULT_SIZE, negative_size: int = DEFAULT_NEGATIVE_SIZE, secret: bytes | None = None,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.negative_ttl = min(negative_ttl, ttl)
        self._secret = secret if secret is not None else os.urandom(32)
        self._good = _LRU(size)
        self._bad = _LRU(negative_size)
        # Bumped by every clear: a verification that started before a change is not remembered after it.
        self.generation = 0
        self._watched: list[UsersFile] = []
        self.hits = self.misses = 0

    def watch(self, users_file: UsersFile) -> None:
        """Clear whenever `users_file` is re-read with other contents."""
        users_file.on_change.append(self.clear)
        self._watched.append(users_file)

    def clear(self) -> None:
        self._good.entries.clear()
        self._bad.entries.clear()
        self.generation += 1

    def key(self, username: str, password: str) -> bytes:
        # Lower-cased, never stripped: " alice" is not alice (AuthService refuses it before the cache).
        name = username.lower().encode("utf-8")
        # Length-prefixed: no (name, password) pair encodes like another.
        message = len(name).to_bytes(4, "big") + name + password.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def lookup(self, username: str, password: str) -> tuple[bytes, int, Identity | UnauthorizedLogin | None]:
        """(key, generation, answer); the key and generation go back to `remember`."""
        # A cached answer must not outlive a change to the users file, and a hit
        # never reaches the checker that would notice it: look (one stat) here.
        for users_file in self._watched:
            users_file.users()
        key = self.key(username, password)
        if self.ttl <= 0:
            return key, self.generation, None
        now = self.clock.seconds()
        answer = self._good.get(key, now)
        if answer is None:
            answer = self._bad.get(key, now)
        if answer is None:
            self.misses += 1
            return key, self.generation, None
        self.hits += 1
        if isinstance(answer, Identity):
            if answer.backend != "users_file":
                # A directory answers with the name as typed (the users file with its own spelling).
                answer = replace(answer, name=username)
        elif isinstance(answer, WrongPassword):
            answer = WrongPassword(answer.account, f"{answer} (remembered)")
        else:
            answer = UnauthorizedLogin(f"{answer} (remembered)")
        return key, self.generation, answer

    def remember(self, key: bytes, generation: int, answer: Identity | UnauthorizedLogin) -> None:
        if self.ttl <= 0 or generation != self.generation:
            return
        now = self.clock.seconds()
        if isinstance(answer, Identity):
            self._bad.pop(key)
            self._good.put(key, answer, now + self.ttl)
        elif self.negative_ttl > 0:
            self._good.pop(key)
            self._bad.put(key, answer, now + self.negative_ttl)

    def __len__(self) -> int:
        return len(self._good.entries) + len(self._bad.entries)
