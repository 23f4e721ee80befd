"""
Every shortcut the gateway takes through Twisted's private internals, in one place.

Each module here uses names Twisted does not promise to keep (they start with
an underscore), for a measured gain (bench/RESULTS.md). Each one checks those
names before using them and, when they are not what it was written against,
falls back to Twisted's public behaviour: a newer Twisted can make the gateway
slower, never wrong. tests/fastpath/ asserts the private names and signatures
on the installed Twisted, so an upgrade that changes them fails the suite
before it silently turns a fast path off; setup.cfg bounds Twisted to the
releases that suite has run against.

- dispatch: the epoll reactor's I/O events handed to their readers and
  writers without the legacy log context (EPollReactor._poller,
  _selectables, _doReadOrWrite).
- sendnow: a reply handed to the socket at once when nothing waits in the
  transport's buffer (FileDescriptor._writeDisconnected, _tempDataBuffer);
  on TLS, the reply encrypted now rather than a reactor turn later
  (BufferingTLSTransport._aggregator).
"""

from __future__ import annotations

from gateway.fastpath import dispatch, sendnow


def available() -> dict[str, bool]:
    """Which fast paths the installed Twisted supports, by module name (False: the public path is used)."""
    return {"dispatch": dispatch.available(), "sendnow": sendnow.available(), "sendnow_tls": sendnow.tls_available()}
