"""gateway/interfaces.py: every provider declares its seam and has what the interface names (verifyObject)."""

from pathlib import Path

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from gateway.config import SendConnector
from gateway.deliver.maildir import MaildirDelivery
from gateway.deliver.mx import MXDelivery
from gateway.deliver.smtp import SMTPDelivery
from gateway.domains import AcceptedDomain, AcceptedDomains
from gateway.intake import IntakeHandler, IntakeTransaction
from gateway.interfaces import (
    IDeliverer,
    IMessageHandler,
    IMessageTransaction,
    IQueueEntry,
    IQueueStore,
    IRouter,
    ISessionEvents,
    ISessionObserver,
    ISpareAllocator,
)
from gateway.proxy import FrontendTransaction, ProxyHandler
from gateway.queue.spares import SpareFiles
from gateway.queue.store import QueueStore
from gateway.route.router import Router
from gateway.sign.dkim import SignedDelivery
from gateway.smtpd.observer import NullObserver
from gateway.smtpd.shutdown import Sessions
from gateway.testing import FakeDeliverer, FakeHandler, FakeQueueStore, FakeRouter, FakeTransaction


def sync_runner(f, *args):
    return succeed(f(*args))


def router() -> Router:
    return Router(AcceptedDomains([AcceptedDomain("corp", "corp.example")]))


@pytest.mark.parametrize(
    "interface, make",
    [
        (IRouter, router),
        (IRouter, FakeRouter),
        (IQueueStore, lambda: QueueStore(Path("q"), sync_runner)),
        (IQueueStore, FakeQueueStore),
        (IQueueEntry, lambda: QueueStore(Path("q"), sync_runner).create("1001")),
        (IQueueEntry, lambda: FakeQueueStore().create("1001")),
        (ISpareAllocator, lambda: SpareFiles(Path("q"), sync_runner)),
        (IDeliverer, lambda: MaildirDelivery(Path("mail"), sync_runner, Clock())),
        (IDeliverer, lambda: SMTPDelivery(None, (), "hub.corp.example")),
        (IDeliverer, lambda: MXDelivery(None, None, SendConnector("Internet", ("*",), ()), None)),
        (IDeliverer, lambda: SignedDelivery(FakeDeliverer())),
        (IDeliverer, FakeDeliverer),
        (IMessageHandler, lambda: IntakeHandler(FakeQueueStore(), router(), None, Clock(), "hub.corp.example")),
        (IMessageHandler, lambda: ProxyHandler(None)),
        (IMessageHandler, FakeHandler),
        (IMessageTransaction, lambda: FakeTransaction(FakeHandler(), None, None)),
        (IMessageTransaction, lambda: FrontendTransaction(ProxyHandler(None), None, None)),
        (ISessionObserver, Sessions),
        (ISessionEvents, NullObserver),
    ],
    ids=lambda v: getattr(v, "__name__", None) if isinstance(v, type) else None,
)
def test_each_provider_has_what_its_interface_names(interface, make):
    """verifyObject: the provider declares the interface, and has its methods with compatible signatures and its attributes."""
    provider = make()
    assert interface.providedBy(provider)
    assert verifyObject(interface, provider)


def test_the_intake_transaction_declares_its_seam():
    """IntakeTransaction reads the session at construction, so its class is verified: methods and signatures."""
    assert verifyClass(IMessageTransaction, IntakeTransaction)


def test_the_smtp_session_has_what_a_stop_asks_of_it():
    """ESMTPServer declares ISession and has its methods (stop_gently, stop_now)."""
    from gateway.interfaces import ISession
    from gateway.smtpd.protocol import ESMTPServer

    assert verifyClass(ISession, ESMTPServer)
