"""A Channel (gateway/smtpd/channel.py) that records what a session part asked of the framing, in order."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from gateway import testing
from gateway.policy.rights import Principal, connector_rights
from gateway.smtpd.session import Session


class FakeChannel:
    def __init__(self, pending_input: bytes = b"") -> None:
        self.closed = False
        self.junk_commands = 0
        self.calls: list = []
        self.pending_input = pending_input

    def send(self, reply):
        self.calls.append(("send", reply))

    def answer(self, result):
        self.calls.append(("answer", result))

    def answer_now(self, reply, details=None):
        self.calls.append(("answer_now", reply))

    def fail(self, failure):
        self.calls.append(("fail", failure.value))

    def run(self, method, *args):
        self.calls.append(("run", method(*args)))

    def close(self):
        self.closed = True
        self.calls.append(("close",))

    def drop_transaction(self):
        self.calls.append(("drop",))

    def discard_input(self) -> int:
        count, self.pending_input = len(self.pending_input), b""
        self.calls.append(("discard", count))
        return count

    def start_tls(self, options):
        self.calls.append(("start_tls", options))


def connector(name: str = "Default Frontend", **changes):
    import dataclasses

    c = next(c for c in testing.config().receive_connectors if c.name == name)
    return dataclasses.replace(c, **changes) if changes else c


def session(c, principal: Principal = Principal.ANONYMOUS) -> Session:
    return Session(connector=c, session_id="0000000100000001", client_ip="192.0.2.1", client_port=40000,
                   server_ip="127.0.0.1", server_port=25, principal=principal, rights=connector_rights(c, principal))


def fired(value) -> Deferred:
    d: Deferred = Deferred()
    d.callback(value)
    return d
