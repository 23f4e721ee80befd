"""
gateway/service.py, builder by builder: what each role builds on a given
config, in what order, and that each object is handed its collaborators
(the shared sessions, metrics, tracking log, back pressure, supervisor)
rather than left to find them. Nothing is started: building binds no port
and writes no file, so a MemoryReactorClock is the reactor.
"""

from pathlib import Path

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock

from gateway import testing
from gateway.admin.health import NodeState
from gateway.admin.metrics import Metrics
from gateway.deliver.health import AddressHealth
from gateway.deliver.maildir import MaildirDelivery
from gateway.deliver.mx import MXDelivery
from gateway.deliver.resolve import MXResolver
from gateway.deliver.smtp import SMTPDelivery
from gateway.listenservice import ListeningService
from gateway.nexthop import MAILBOX, NextHop
from gateway.nodeservices import DirectoryService, HubPoolService, PidFileService, PrivateDirectoryService, QueueService
from gateway.policy.backpressure import BackPressure
from gateway.policy.limits import ConnectionLimits
from gateway.proxy import ProxyHandler
from gateway.reload import LiveConfig, ReloadOnHangup
from gateway.serialthread import SerialThread
from gateway.service import AdminBuilder, FrontendBuilder, HubBuilder, Process, ProtocolLogs, build_service
from gateway.smtpd.shutdown import Sessions
from gateway.startup import StartupLines
from gateway.workers import Listener, ParentLink, WorkerSupervisor

SMART = {"name": "Partner", "address_spaces": ["partner.example"], "smart_hosts": ["192.0.2.25"]}
MX = {"name": "Internet", "address_spaces": ["*"]}


def gateway_config(tmp_path: Path, **sections):
    sections.setdefault("server", {"name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": str(tmp_path / "var")})
    return testing.config(**sections)


def process(config, roles=("frontend", "hub"), worker: int = 0, metrics=True) -> Process:
    """The shared part of one process, as build_service makes it, on a MemoryReactorClock."""
    reactor = MemoryReactorClock()
    return Process(
        config=config, reactor=reactor, worker=worker, live=LiveConfig(config, config.path, roles),
        limits=ConnectionLimits(), state=NodeState(config.var_dir / "draining"), sessions=Sessions(),
        metrics=Metrics() if metrics else None, resolver=MXResolver(None), health=AddressHealth(reactor),
        logs=ProtocolLogs(config, reactor), node=testing.node_credential(), run_in_thread=lambda f, *a: succeed(f(*a)), inherited={},
    )


def kinds(services) -> list[type]:
    """Each service's class; a port (the admin socket's _AfterPrivileges too) as ListeningService."""
    return [ListeningService if isinstance(s, ListeningService) else type(s) for s in services]


def bindings(listeners) -> list[str]:
    return [str(s.binding) for s in listeners]


# --- hub ---------------------------------------------------------------------


def test_the_hub_adds_its_queue_before_its_listeners():
    """Queue thread, QueueService, back pressure, then the hub connector's listener (stopped first, so intake closes before the queue)."""
    p = process(gateway_config(Path("/nonexistent")))
    hub = HubBuilder(p).build()
    assert [type(s) for s in hub.services] == [SerialThread, QueueService, BackPressure, Listener]
    assert bindings(hub.listeners) == ["127.0.0.1:2525"] and hub.services[3:] == hub.listeners


def test_the_hub_hands_each_part_its_collaborators_at_construction(tmp_path):
    """Intake: the scheduler, back pressure and tracking log; notices share the intake's ids; listeners: the hub handler, node, sessions, metrics."""
    p = process(gateway_config(tmp_path, message_tracking={"enabled": True}))
    hub = HubBuilder(p).build()
    intake, scheduler = hub.intake, hub.scheduler
    assert intake.scheduler is scheduler and intake.pressure is hub.pressure and intake.store is hub.store
    assert intake.tracking is not None and scheduler.tracking is intake.tracking is scheduler.notifier.tracking
    assert scheduler.notifier.ids is intake.ids and scheduler.notifier.limit is not None and scheduler.metrics is p.metrics
    assert intake.tracking in p.logs.logs
    factory = hub.listeners[0].factory
    assert (factory.handler, factory.node, factory.sessions, factory.metrics, factory.state) == (intake, p.node, p.sessions, p.metrics, p.state)


def test_a_notice_queues_through_the_scheduler_it_was_built_with(tmp_path, monkeypatch):
    """The notifier's enqueue reaches the scheduler made after it (the one cycle in the hub, closed by a call)."""
    hub = HubBuilder(process(gateway_config(tmp_path))).build()
    seen = []
    monkeypatch.setattr(hub.scheduler, "enqueue", lambda *args, **kw: seen.append((args, kw)))
    hub.scheduler.notifier.enqueue("envelope", b"body")
    assert seen == [(("envelope", b"body"), {})]


def test_the_mailbox_store_is_a_maildir_or_an_smtp_next_hop_and_connectors_get_theirs(tmp_path):
    """Default: Maildir; mailbox delivery = smtp: an SMTP client to its next hop; smart hosts: SMTPDelivery; no smart hosts: MX."""
    hub = HubBuilder(process(gateway_config(tmp_path, send_connectors=[SMART, MX]))).build()
    deliverers = hub.scheduler.deliverers
    assert isinstance(deliverers.get(MAILBOX).deliverer, MaildirDelivery)
    partner, internet = hub.scheduler.router.send_connectors
    assert isinstance(deliverers.get(NextHop.via(partner)).deliverer, SMTPDelivery)
    assert isinstance(deliverers.get(NextHop.via(internet)).deliverer, MXDelivery)
    smtp = HubBuilder(process(gateway_config(tmp_path, mailbox={"delivery": "smtp", "next_hop": "192.0.2.30:25"}))).build()
    assert isinstance(smtp.scheduler.deliverers.get(MAILBOX).deliverer, SMTPDelivery)


# --- frontend ----------------------------------------------------------------


def test_a_frontend_beside_its_hub_hands_messages_to_the_handler_it_is_given(tmp_path):
    """Role all: the frontend connectors' listeners only, each with the handler given (here a FakeHandler), no hub pool."""
    handler = testing.FakeHandler()
    frontend = FrontendBuilder(process(gateway_config(tmp_path))).build_local(handler)
    assert frontend.services == frontend.listeners and bindings(frontend.listeners) == ["127.0.0.1:2025"]
    assert frontend.listeners[0].factory.handler is handler and frontend.listeners[0].factory.node is None
    assert frontend.probe_pool is None


def test_a_frontend_alone_proxies_to_the_hub_pool(tmp_path):
    """Role frontend: its spool directory, the hub pool (closed at stop), then listeners whose handler is the proxy to that pool."""
    p = process(gateway_config(tmp_path), roles=("frontend",))
    frontend = FrontendBuilder(p).build_proxy()
    spool, pool_service, listener = frontend.services
    assert isinstance(spool, DirectoryService) and spool.dirs == (p.config.var_dir / "spool",)
    assert isinstance(pool_service, HubPoolService) and frontend.listeners == [listener]
    handler = listener.factory.handler
    assert isinstance(handler, ProxyHandler) and handler.pool is pool_service.pool
    assert frontend.probe_pool is not None and frontend.probe_pool is not pool_service.pool


# --- admin -------------------------------------------------------------------


def admin(tmp_path, worker=0, workers=1, health=True):
    config = gateway_config(tmp_path, health={"listen": "127.0.0.1:8081"} if health else {}, server={
        "name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": str(tmp_path / "var"), "workers": workers})
    p = process(config, worker=worker, metrics=health)
    hub = HubBuilder(p).build()
    return AdminBuilder(p, "all", config.path, "--config", None, hub, hub.listeners, None).build()


def test_one_worker_gets_socket_pid_file_admin_health_reload_and_start_up_lines_in_that_order(tmp_path):
    """Worker 0 of one: the admin socket's directory first, then pid file, admin API, health port, SIGHUP, start-up lines; no supervisor."""
    services, supervisor = admin(tmp_path)
    assert kinds(services) == [
        PrivateDirectoryService, PidFileService, ListeningService, ListeningService, ReloadOnHangup, StartupLines,
    ]
    assert services[3].name == "health 127.0.0.1:8081" and supervisor is None
    reload = services[4]
    assert reload.forward is None and services[2].factory.resource.reload == reload.reload_now


def test_worker_0_of_several_supervises_them_last_and_passes_reloads_on(tmp_path):
    """workers = 2: the supervisor is the last service (stops first) and SIGHUP is forwarded to it."""
    services, supervisor = admin(tmp_path, workers=2)
    assert isinstance(supervisor, WorkerSupervisor) and services[-1] is supervisor
    assert next(s for s in services if isinstance(s, ReloadOnHangup)).forward == supervisor.reload_all


def test_another_worker_has_no_pid_file_no_health_port_and_links_to_worker_0(tmp_path):
    """Worker 1: its own admin socket, no pid file, no health port (worker 0 answers for the node), a ParentLink last."""
    services, supervisor = admin(tmp_path, worker=1, workers=2)
    assert kinds(services) == [PrivateDirectoryService, ListeningService, ReloadOnHangup, StartupLines, ParentLink]
    assert supervisor is None and services[1].factory.resource.reload is None


# --- the whole process ---------------------------------------------------------


def test_build_service_hands_the_top_service_every_listener_and_their_sessions(tmp_path):
    """The GatewayService closes the listeners it was given and waits for the sessions they register with: the same objects."""
    from twisted.internet import reactor  # build_service asks the reactor for its thread pool (not started by asking)

    top = build_service(gateway_config(tmp_path), "all", reactor, log_observer=None)
    listeners = [s for s in top if isinstance(s, Listener)]
    assert sorted(bindings(listeners)) == ["127.0.0.1:2025", "127.0.0.1:2525"] and top.listeners == listeners
    assert all(s.factory.sessions is top.sessions for s in listeners) and top.supervisor is None
