"""
A service listening on an endpoint, whose start fails when the port cannot be opened.

Twisted's StreamServerEndpointService logs a listen failure and starts anyway
unless a private flag (`_raiseSynchronously`) is set, as `strports.service`
does for twistd's own ports. The gateway wants that behaviour (a health or
admin port already taken stops start-up with the reason, instead of a node
that runs without them) without the private flag: the endpoints it listens on
(TCP, UNIX) answer `listen` at once, so the result is read from the Deferred
with public API, and an endpoint that answers later is logged as Twisted does.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="exgateway.listen")


class ListeningService(Service):
    """Listens on `endpoint` with `factory` in privilegedStartService (so before twistd drops privileges)."""

    def __init__(self, endpoint, factory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.port = None
        self._listening: Deferred | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self.port is None and self._listening is None:
            self._listen()

    def _listen(self) -> None:
        outcome: list = []

        def record(result):
            outcome.append(result)
            return result

        self._listening = self.endpoint.listen(self.factory).addBoth(record)
        if not outcome:
            # An endpoint that answers later: its failure goes to the log, as Twisted's own service does.
            self._listening.addCallbacks(self._listened, self._late_failure)
            return
        self._listening = None
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]

    def _listened(self, port):
        self.port = port
        return port

    def _late_failure(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            log.failure("Could not listen on {endpoint!r}", failure, endpoint=self.endpoint)

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        if self._listening is not None and not self._listening.called:
            self._listening.cancel()
        return None
