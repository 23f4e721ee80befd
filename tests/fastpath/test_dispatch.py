"""gateway/fastpath/dispatch.py: the epoll reactor's events go straight to their readers, failures still contained."""

import os

import pytest
from twisted.internet.abstract import FileDescriptor

from gateway.fastpath import dispatch

epollreactor = pytest.importorskip("twisted.internet.epollreactor")


class PipeReader(FileDescriptor):
    """The read end of a pipe: records what it reads, or raises if told to."""

    def __init__(self, reactor, fd: int, fail: bool = False) -> None:
        super().__init__(reactor)
        self.fd = fd
        self.fail = fail
        self.read = []
        self.lost = []

    def fileno(self) -> int:
        return self.fd

    def doRead(self):
        if self.fail:
            raise RuntimeError("broken reader")
        self.read.append(os.read(self.fd, 100))

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)


@pytest.fixture
def epoll():
    reactor = epollreactor.EPollReactor()
    pipes = []
    yield reactor, pipes
    for fd in pipes:
        os.close(fd)
    reactor._poller.close()


def pipe_reader(reactor, pipes, fail=False) -> tuple[PipeReader, int]:
    r, w = os.pipe()
    pipes += [r, w]
    reader = PipeReader(reactor, r, fail)
    reactor.addReader(reader)
    return reader, w


def test_installed_only_on_twisteds_own_epoll_reactor(epoll):
    reactor, _ = epoll
    assert dispatch.install(reactor)
    assert reactor.doIteration.__func__ is dispatch._poll
    from twisted.internet.selectreactor import SelectReactor

    other = SelectReactor()
    assert not dispatch.install(other)
    assert "doIteration" not in other.__dict__


def test_a_readable_descriptor_is_read_in_the_next_iteration(epoll):
    reactor, pipes = epoll
    dispatch.install(reactor)
    reader, w = pipe_reader(reactor, pipes)
    os.write(w, b"EHLO x\r\n")
    reactor.doIteration(1)
    assert reader.read == [b"EHLO x\r\n"]
    reactor.doIteration(0)
    assert reader.read == [b"EHLO x\r\n"]


def test_a_reader_that_raises_is_disconnected_and_the_others_still_run(epoll):
    reactor, pipes = epoll
    dispatch.install(reactor)
    broken, w1 = pipe_reader(reactor, pipes, fail=True)
    healthy, w2 = pipe_reader(reactor, pipes)
    os.write(w1, b"x")
    os.write(w2, b"QUIT\r\n")
    reactor.doIteration(1)
    # Twisted's own handling: the failure is logged and that descriptor is dropped.
    assert len(broken.lost) == 1 and broken.lost[0].check(RuntimeError)
    assert broken not in reactor.getReaders()
    assert healthy.read == [b"QUIT\r\n"] and healthy in reactor.getReaders()
