"""ListeningService: a port that cannot be opened stops start-up with its reason; a stop closes the port."""

import pytest
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor

from gateway.admin.api import _AfterPrivileges
from gateway.listenservice import ListeningService


class Refused:
    """An endpoint whose listen fails at once, as a TCP port already taken does."""

    def listen(self, factory):
        return fail(CannotListenError("127.0.0.1", 8080, OSError(98, "Address already in use")))


class Later:
    """An endpoint that answers listen later."""

    def __init__(self):
        self.pending = Deferred()

    def listen(self, factory):
        return self.pending


def test_a_port_already_taken_stops_privileged_start_with_the_reason():
    """twistd's privilegedStartService raises, so start-up ends with 'Address already in use', not a node without its port."""
    top = MultiService()
    ListeningService(Refused(), Factory()).setServiceParent(top)
    with pytest.raises(CannotListenError, match="Address already in use"):
        top.privilegedStartService()


def test_listens_before_privileges_drop_and_stop_closes_the_port():
    """The port opens in privilegedStartService (port 8080 as root), startService does not open it twice, stop closes it."""
    reactor = MemoryReactor()
    service = ListeningService(TCP4ServerEndpoint(reactor, 8080, interface="127.0.0.1"), Factory())
    service.privilegedStartService()
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [(8080, "127.0.0.1")]
    service.startService()
    assert len(reactor.tcpServers) == 1 and service.running
    stopped = []
    service.port.stopListening = lambda: stopped.append(True)
    service.stopService()
    assert stopped == [True] and not service.running and service.port is None


def test_the_admin_socket_listens_only_after_privileges_drop():
    """The admin API's UNIX socket is opened in startService, so it belongs to the service user; a failure there still raises."""
    reactor = MemoryReactor()
    service = _AfterPrivileges(TCP4ServerEndpoint(reactor, 0), Factory())
    service.privilegedStartService()
    assert reactor.tcpServers == []
    service.startService()
    assert len(reactor.tcpServers) == 1
    refused = _AfterPrivileges(Refused(), Factory())
    refused.privilegedStartService()
    with pytest.raises(CannotListenError):
        refused.startService()


def test_an_endpoint_that_answers_later_is_waited_for_and_a_stop_cancels_it():
    """No synchronous answer: the port is taken when it comes; a stop before then cancels the attempt without a logged error."""
    endpoint = Later()
    service = ListeningService(endpoint, Factory())
    service.startService()
    assert service.port is None
    service.stopService()
    # Cancelled, and the CancelledError is not left unhandled (it would be logged as an error at garbage collection).
    assert endpoint.pending.called
    outcome = []
    endpoint.pending.addBoth(outcome.append)
    assert outcome == [None]
