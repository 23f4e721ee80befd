"""
The epoll reactor's events handed to their readers and writers directly.

Twisted's EPollReactor wraps every I/O event in `log.callWithLogger`, which
sets up the legacy logging context (the "system" prefix that `log.msg`
picks up) through four nested calls, and catches any exception a second
time after `_doReadOrWrite` has already caught it. The gateway logs through
`twisted.logger` with its own namespaces and fields, so it never reads that
context. A message costs about a dozen I/O events, and the wrapper's share
of the reactor thread's Python (about a tenth of it in a one-session
profile, bench/RESULTS.md) is pure overhead.

`install` replaces `doIteration` on the running reactor's instance with the
same loop minus the wrapper, and only on the reactor class it was written
against, and only when the private names that loop uses are there with the
signatures it calls them with (`available`): any other reactor, or a Twisted
that changed them, is left exactly as it is. What the wrapper did that
still matters is kept: an event whose handling raises is logged and the rest
of that poll's events still run.
"""

from __future__ import annotations

import inspect
import select
from types import MethodType
from typing import Any

from twisted.logger import Logger

EPollReactor: type | None
try:
    from twisted.internet import epollreactor

    EPollReactor = epollreactor.EPollReactor
except ImportError:  # no epoll on this platform: nothing to replace
    EPollReactor = None

log = Logger(namespace="exgateway.reactor")


def available(reactor=None) -> bool:
    """
    Whether EPollReactor still has what `_poll` uses, as it uses it: a
    `_doReadOrWrite(selectable, fd, event)` method and, on `reactor` when one
    is given, the `_poller` (an epoll object) and `_selectables`
    (fd -> selectable) it polls.
    """
    if EPollReactor is None:
        return False
    handle = getattr(EPollReactor, "_doReadOrWrite", None)
    if handle is None:
        return False
    try:
        if list(inspect.signature(handle).parameters) != ["self", "selectable", "fd", "event"]:
            return False
    except (TypeError, ValueError):
        return False
    if reactor is None:
        return True
    poller = getattr(reactor, "_poller", None)
    return isinstance(poller, select.epoll) and isinstance(getattr(reactor, "_selectables", None), dict)


def install(reactor: Any) -> bool:
    """Dispatch `reactor`'s I/O events directly, if it is Twisted's own epoll reactor as this was written for; whether it did."""
    if EPollReactor is None or type(reactor) is not EPollReactor:
        return False
    if not available(reactor):
        log.warn("Twisted's epoll reactor changed: its I/O events go through its own doIteration (slower, same behaviour)")
        return False
    if reactor.__dict__.get("doIteration") is not None:
        return True
    # On the instance only: the class, and any other reactor, stay as Twisted made them.
    setattr(reactor, "doIteration", MethodType(_poll, reactor))  # noqa: B010 (the type checker sees no such attribute)
    return True


def _poll(reactor, timeout: float | None) -> None:
    """EPollReactor.doPoll, each event handled by `_doReadOrWrite` without the legacy log context."""
    if timeout is None:
        timeout = -1
    # EINTR is retried by Python itself (PEP 475); any other error is a bug to surface.
    events = reactor._poller.poll(timeout, len(reactor._selectables))
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is None:
            continue
        try:
            handle(selectable, fd, event)
        except BaseException:
            # _doReadOrWrite catches what doRead and doWrite raise; this is its own
            # disconnect step failing. The other events of this poll still run.
            log.failure("I/O event on {selectable!r} failed", selectable=selectable)
