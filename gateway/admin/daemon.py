"""
Finding the running gateway from the `exgateway` command: through the
config file (the same one twistd found, gateway/configpath.py), whose
var_dir holds the admin sockets. Never through the current directory.

When there is no gateway to talk to, or it refuses, the command says so in
one line and exits non-zero: a command that prints "done" and changed
nothing is worse than one that fails.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.configpath import is_packaged_sample


class Unreachable(Exception):
    """No running gateway answers on this config's admin socket(s); the message says which and what to try."""


def process_sockets(config) -> list[Path]:
    """
    Worker 0's admin socket of each process on this var_dir: the hub (or
    all-roles) process's, and a frontend-only process's beside it.
    """
    return [config.admin_socket, config.admin_socket.with_name("admin-frontend.sock")]


def hint(config) -> str:
    """What to try when the gateway is not where this config says."""
    if is_packaged_sample(config.path):
        return (f"the packaged sample config puts var_dir in the current directory ({config.var_dir}); "
                "run this where twistd runs, or give --config FILE or set EXGATEWAY_CONFIG")
    return f"is the gateway running with --config {config.path}?"


def ask_each(config, method: str, path: str, timeout: float = 60.0, **params) -> list[tuple[Path, int, dict]]:
    """
    (socket, status, decoded answer) from each running process of this
    config (see process_sockets); Unreachable if none answers.
    """
    from gateway.admin.queues import call

    answers, failures = [], []
    for socket_path in process_sockets(config):
        if not socket_path.exists():
            failures.append(f"{socket_path}: no such socket")
            continue
        try:
            status, body = call(socket_path, method, path, timeout, **params)
        except OSError as e:
            failures.append(f"{socket_path}: {e.strerror or e}")
            continue
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"error": body.decode("utf-8", "replace")}
        answers.append((socket_path, status, answer))
    if not answers:
        raise Unreachable(f"no gateway answers for {config.path} ({failures[0]}); {hint(config)}")
    return answers


__all__ = ["Unreachable", "ask_each", "hint", "process_sockets"]
