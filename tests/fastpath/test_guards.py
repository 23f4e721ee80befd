"""
The private Twisted names each fast path uses, asserted on the installed Twisted.

These fail when an upgrade renames or reshapes one of them: the fast path
would then fall back to Twisted's public behaviour (slower, same bytes), and
this is where the suite says so. Raise setup.cfg's Twisted bound together
with a green run of this directory.
"""

import inspect
import select

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.tcp import Connection

from gateway import fastpath
from gateway.fastpath import dispatch, sendnow

epollreactor = pytest.importorskip("twisted.internet.epollreactor")


def test_every_fast_path_is_available_on_the_installed_twisted():
    """fastpath.available() names each shortcut; on the Twisted in setup.cfg's bounds, all of them are on."""
    assert fastpath.available() == {"dispatch": True, "sendnow": True, "sendnow_tls": True}


def test_epoll_reactor_has_what_dispatch_polls_with_the_signatures_it_calls():
    """dispatch._poll uses _poller.poll(timeout, maxevents), _selectables[fd] and _doReadOrWrite(selectable, fd, event)."""
    params = list(inspect.signature(epollreactor.EPollReactor._doReadOrWrite).parameters)
    assert params == ["self", "selectable", "fd", "event"]
    assert list(inspect.signature(epollreactor.EPollReactor.doPoll).parameters) == ["self", "timeout"]
    reactor = epollreactor.EPollReactor()
    try:
        assert isinstance(reactor._poller, select.epoll)
        assert isinstance(reactor._selectables, dict)
        assert dispatch.available(reactor)
    finally:
        reactor._poller.close()


def test_tcp_connections_have_the_buffers_sendnow_reads():
    """sendnow.send reads _writeDisconnected (False while open) and _tempDataBuffer (a list, empty when nothing waits)."""
    assert Connection._writeDisconnected is False
    assert Connection.dataBuffer == b""
    descriptor = FileDescriptor(reactor=object())
    assert descriptor._tempDataBuffer == []
    assert callable(Connection.doWrite) and list(inspect.signature(Connection.doWrite).parameters) == ["self"]
    assert sendnow.available()


def test_dispatch_is_not_installed_when_the_reactor_lacks_its_private_names(monkeypatch):
    """A Twisted whose epoll reactor changed keeps its own doIteration: slower, never broken."""
    reactor = epollreactor.EPollReactor()
    try:
        monkeypatch.delattr(reactor, "_selectables")
        assert not dispatch.available(reactor)
        assert not dispatch.install(reactor)
        assert "doIteration" not in reactor.__dict__
    finally:
        reactor._poller.close()


def test_dispatch_is_not_installed_when_doreadorwrite_changed_signature(monkeypatch):
    """The guard compares the parameters _poll passes, not only the name."""
    reactor = epollreactor.EPollReactor()
    try:
        monkeypatch.setattr(epollreactor.EPollReactor, "_doReadOrWrite", lambda self, selectable, event: None)
        assert not dispatch.install(reactor)
        assert "doIteration" not in reactor.__dict__
    finally:
        reactor._poller.close()
