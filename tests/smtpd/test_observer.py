"""gateway/smtpd/observer.py: what a session tells its metrics and its protocol log, through one observer."""

import dataclasses

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from gateway import testing
from gateway.admin.metrics import Metrics
from gateway.domains import AcceptedDomains
from gateway.errors import Reply
from gateway.interfaces import ISessionEvents
from gateway.policy.checks import SessionPolicy
from gateway.smtpd.observer import MetricsObserver, NullObserver, Observers, ProcessLogObserver, ProtocolLogObserver, observer_for
from gateway.smtpd.protocol import ESMTPServer
from tests.smtpd.test_tls_auth import Recorder

NOW = 1_795_000_000.0


def samples(metrics: Metrics, name: str) -> dict:
    text = generate_latest(metrics.registry).decode()
    families = text_string_to_metric_families(text)
    return {tuple(sorted(s.labels.items())): s.value for f in families for s in f.samples if s.name == name}


def session(**kw):
    cfg = testing.config()
    connector = dataclasses.replace(cfg.receive_connectors[0], tarpit_interval=0.0)
    clock = Clock()
    clock.advance(NOW)
    proto = ESMTPServer(connector, testing.FakeHandler(), SessionPolicy(AcceptedDomains(cfg.accepted_domains)), clock, **kw)
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 25), peerAddress=IPv4Address("TCP", "192.0.2.1", 40000)
    )
    proto.makeConnection(transport)
    return proto, transport


def test_each_observer_provides_the_interface():
    """verifyObject: every observer, the fan-out included, has what ISessionEvents names."""
    connector = testing.config().receive_connectors[0]
    for observer in (NullObserver(), ProcessLogObserver(), ProtocolLogObserver(Recorder(Clock())),
                     MetricsObserver(Metrics(), "x"), Observers(NullObserver()), observer_for(connector, Metrics())):
        assert verifyObject(ISessionEvents, observer)


def test_a_session_counts_connections_refusals_messages_and_open_sessions():
    """The metrics a session feeds: connections and open sessions, 4xx/5xx replies by code, messages answered 250."""
    metrics = Metrics()
    proto, _transport = session(metrics=metrics)
    proto.dataReceived(b"EHLO client.example\r\nBOGUS\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@corp.example>\r\n"
                       b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    name = (("connector", "Default Frontend"),)
    assert samples(metrics, "exgateway_connections_total") == {name: 1.0}
    assert samples(metrics, "exgateway_sessions") == {name: 1.0}
    assert samples(metrics, "exgateway_replies_rejected_total") == {(("code", "500"), *name): 1.0}
    assert samples(metrics, "exgateway_messages_accepted_total") == {name: 1.0}
    proto.connectionLost(None)
    assert samples(metrics, "exgateway_sessions") == {name: 0.0}


def test_the_protocol_log_never_shows_an_auth_initial_response():
    """An AUTH line with its initial response is logged with the mechanism only; a response line as ****."""
    recorder = Recorder(Clock())
    observer = ProtocolLogObserver(recorder)
    _proto, _ = session(observer=observer)
    observer.command_received("AUTH PLAIN AHNlY3JldA==")
    observer.command_received("AUTH LOGIN")
    observer.secret_received()
    assert recorder.lines[-3:] == [("<", "AUTH PLAIN ****", ""), ("<", "AUTH LOGIN", ""), ("<", "****", "")]


def test_observer_for_picks_the_protocol_log_only_where_the_connector_logs_verbosely():
    """ProtocolLoggingLevel None: the process log's connect line; Verbose: the protocol log; metrics beside either."""
    connector = testing.config().receive_connectors[0]
    verbose = dataclasses.replace(connector, protocol_logging_level="Verbose")
    quiet = dataclasses.replace(connector, protocol_logging_level="None")
    recorder = Recorder(Clock())
    assert isinstance(observer_for(quiet, None, recorder), ProcessLogObserver)
    assert isinstance(observer_for(verbose, None, recorder), ProtocolLogObserver)
    assert isinstance(observer_for(verbose, None, None), ProcessLogObserver)
    both = observer_for(verbose, Metrics(), recorder)
    assert isinstance(both, Observers)
    assert [type(o) for o in both.observers] == [ProtocolLogObserver, MetricsObserver]


def test_a_refusal_is_seen_once_by_each_observer():
    """The fan-out tells every observer, in order."""
    seen = []

    class Seen(NullObserver):
        def __init__(self, name):
            self.name = name

        def refused(self, reply):
            seen.append((self.name, reply.code))

    Observers(Seen("a"), Seen("b")).refused(Reply.UNRECOGNIZED)
    assert seen == [("a", 500), ("b", 500)]
