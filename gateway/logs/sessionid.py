"""
Exchange-style session ids for the protocol logs: 16 hex digits, the
connection's start second then a counter, unique within a node's run. The
receive side (gateway/smtpd/) and the send side (gateway/deliver/client.py)
draw from the one counter, so no two sessions of a process share an id.
"""

from __future__ import annotations

import itertools

_session_counter = itertools.count(1)


def new_session_id(now: float) -> str:
    """Exchange-style session id: hex, unique within a node's run (see number_sessions_as)."""
    return f"{int(now):08X}{next(_session_counter):08X}"


def number_sessions_as(worker: int, workers: int) -> None:
    """The workers of one node take turns with session numbers, so their logs never share an id."""
    global _session_counter
    _session_counter = itertools.count(worker + 1, workers)
