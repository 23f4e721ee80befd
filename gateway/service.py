"""
Builds the gateway's services from a config: the only place that wires
objects together (gateway/tap.py parses twistd's options and calls
build_service; tests call the builders with fakes).

One process runs the roles it is given (DESIGN.md, "Default topology"):

- `Process` holds what every role of the process shares (the live config,
  connection limits, drain state, sessions, metrics, DNS and next-hop
  health, the protocol logs) and makes SMTP listeners;
- `HubBuilder` builds the durable side: the queue's thread, store,
  deliverers, scheduler and notices, the intake, back pressure and the hub
  listeners;
- `FrontendBuilder` builds the client side: listeners that hand messages
  to this process's own intake (role all) or to the hub pool (role
  frontend);
- `AdminBuilder` builds what an admin reaches: the admin socket, pid file,
  health and metrics port, SIGHUP reload, start-up lines and the workers.

Every builder takes its collaborators as required constructor arguments,
and every object gets its collaborators in its constructor: nothing is
assigned after the fact. Order is behaviour here: twistd stops a
MultiService's children in reverse order, so the queue and delivery are
added before the listeners (a stop closes intake before the queue) and the
worker supervisor last (it stops first). build_service keeps that order.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.web.resource import IResource

from gateway.admin.api import admin_service
from gateway.admin.health import HUB_PROBE_TIMEOUT, NodeState, Readiness, health_site
from gateway.admin.metrics import Metrics, NodeMetrics
from gateway.auth.node import NodeCredential, NodeSecretService
from gateway.auth.service import build_auth
from gateway.auth.verifypool import VerifyPool
from gateway.config import Binding, Config
from gateway.deliver.health import AddressHealth
from gateway.deliver.maildir import MaildirDelivery
from gateway.deliver.mx import MXDelivery
from gateway.deliver.pool import ConnectionPool
from gateway.deliver.registry import Deliverers
from gateway.deliver.resolve import MXResolver, make_resolver
from gateway.deliver.security import OutboundSecurity, connector_security
from gateway.deliver.smtp import SMTPDelivery
from gateway.deliver.timeouts import PhaseTimeouts
from gateway.intake import IntakeHandler, InternalIds
from gateway.listenservice import ListeningService
from gateway.logs.protocol import ProtocolLog, ProtocolLogService
from gateway.logs.sessionid import number_sessions_as
from gateway.logs.tracking import TrackingLog
from gateway.nexthop import MAILBOX_QUEUE
from gateway.nodeservices import (
    CertificateService,
    DirectoryService,
    GatewayService,
    HubPoolService,
    PidFileService,
    PrivateDirectoryService,
    QueueService,
)
from gateway.policy.backpressure import BackPressure, meminfo
from gateway.policy.limits import ConnectionLimits
from gateway.policy.recipients import build_recipient_validator
from gateway.proxy import ProxyHandler
from gateway.queue.noticelimit import NoticeLimit
from gateway.queue.notify import Notifier
from gateway.queue.scheduler import DeliveryScheduler
from gateway.queue.spares import SpareFiles
from gateway.queue.store import QueueStore
from gateway.reload import LiveConfig, ReloadOnHangup
from gateway.serialthread import SerialThread
from gateway.sign.dkim import SignedDelivery
from gateway.smtpd.factory import BindingFactory
from gateway.smtpd.shutdown import Sessions
from gateway.startup import StartupLines
from gateway.tls.provider import TLSProvider
from gateway.tls.store import CertificateStore
from gateway.workers import (
    LISTEN_BACKLOG,
    Listener,
    ParentLink,
    WorkerSupervisor,
    admin_socket,
    child_argv,
    inherited_sockets,
    orphaned_queues,
    queue_directory,
)

ROLES = ("all", "frontend", "hub")


class ProtocolLogs:
    """
    The process's protocol logs (and the tracking log), flushed and rotated
    by one ProtocolLogService. Exchange keeps front end and hub logs apart:
    <dir>/FrontEnd/SmtpReceive, <dir>/Hub/SmtpReceive, .../SmtpSend.
    """

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        # ProtocolLogs and the TrackingLog (RollingLogs all), in the order made: ProtocolLogService flushes this list.
        self.logs: list[Any] = []

    def make(self, tier: str, kind: str) -> ProtocolLog:
        plc = self.config.protocol_log
        folder = "SmtpReceive" if kind == "RECV" else "SmtpSend"
        plog = ProtocolLog(plc.directory / tier / folder, kind, self.reactor, plc.max_file_size, plc.max_age, plc.max_directory_size)
        self.logs.append(plog)
        return plog

    def tracking(self) -> TrackingLog | None:
        """The message tracking log, if the config keeps one."""
        mt = self.config.message_tracking
        if not mt.enabled:
            return None
        tracking = TrackingLog(mt.directory, self.reactor, self.config.fqdn, mt.max_file_size, mt.max_age, mt.max_directory_size)
        self.logs.append(tracking)
        return tracking


@dataclass(frozen=True)
class Process:
    """What every role of one process shares; made once by build_service, handed to each builder."""

    config: Config
    reactor: Any
    worker: int
    live: LiveConfig
    limits: ConnectionLimits
    state: NodeState
    sessions: Sessions
    metrics: Metrics | None
    resolver: MXResolver
    health: AddressHealth
    logs: ProtocolLogs
    node: NodeCredential
    run_in_thread: Callable[..., Any]
    # Worker > 0: the listening sockets worker 0 passed down, by binding ("ip:port" -> fd).
    inherited: dict[str, int]

    def listeners(self, role: str, handler: Any, plog: ProtocolLog, node: NodeCredential | None) -> list[Listener]:
        """One Listener per binding of this role's connectors: bound at start, or inherited from worker 0."""
        bindings: list[Binding] = []
        for c in self.live.config.connectors(role):
            if c.enabled:
                bindings += [b for b in c.bindings if b not in bindings]
        listeners = []
        for binding in bindings:
            factory = BindingFactory(
                binding, role, (), handler, self.live.policy, self.reactor, self.limits, plog,
                state=self.state, metrics=self.metrics, sessions=self.sessions, node=node,
            )
            self.live.attach(factory)
            fd = self.inherited.get(str(binding))
            if self.inherited and fd is None:
                raise SystemExit(f"exgateway: worker 0 passed no socket for {binding}; restart the gateway")
            service = Listener(self.reactor, binding, factory, fd)
            service.setName(f"listen {binding}")
            listeners.append(service)
        return listeners


@dataclass(frozen=True)
class Hub:
    """What HubBuilder made: `services` in the order they are added (queue before listeners)."""

    services: list[Service]
    store: QueueStore
    scheduler: DeliveryScheduler
    intake: IntakeHandler
    pressure: BackPressure
    listeners: list[Listener]


class HubBuilder:
    """The durable side: the queue, delivery to the mailbox store and the send connectors, the intake and its listeners."""

    def __init__(self, process: Process) -> None:
        self.process = process

    def mailbox_delivery(self, send_log: ProtocolLog, timeouts: PhaseTimeouts) -> SMTPDelivery | MaildirDelivery:
        """The mailbox store: a Maildir here, or an SMTP next hop (the organisation's mail store)."""
        p = self.process
        config = p.config
        next_hop = config.mailbox.next_hop
        if config.mailbox.delivery == "smtp":
            # The config check refuses delivery = "smtp" without a next_hop.
            assert next_hop is not None
            return SMTPDelivery(
                p.reactor, (next_hop,), config.fqdn,
                protocol_log=send_log if config.mailbox.protocol_logging_level == "Verbose" else None, connector_id=MAILBOX_QUEUE,
                security=config.mailbox.security(),
                timeouts=timeouts,
            )
        return MaildirDelivery(config.mailbox.maildir, p.run_in_thread, p.reactor, config.mailbox.max_mailboxes)

    def send_connector_delivery(self, connector, send_log: ProtocolLog, timeouts: PhaseTimeouts) -> SMTPDelivery | MXDelivery:
        """Smart hosts in order (names expanded to every address), or DNS MX routing."""
        p = self.process
        plog = send_log if connector.protocol_logging_level == "Verbose" else None
        security = connector_security(connector, p.config.certificate_dir, p.reactor)
        if connector.dns_routing:
            return MXDelivery(p.reactor, p.resolver, connector, p.health, plog, timeouts, security)
        pool = ConnectionPool(
            p.reactor, connector.smart_hosts, connector.fqdn, connector.connection_timeout, 16,
            resolver=p.resolver, health=p.health, rotate=False, security=security,
            max_connections=connector.max_connections, max_messages=connector.max_messages_per_connection,
            protocol_log=plog, connector_id=connector.name,
            timeouts=timeouts,
        )
        return SMTPDelivery(p.reactor, connector.smart_hosts, connector.fqdn, pool=pool, max_message_size=connector.max_message_size)

    def build(self) -> Hub:
        p = self.process
        config, reactor = p.config, p.reactor
        # The queue's file work in one thread of its own; started before the queue service, so stopped after it.
        queue_files = SerialThread(reactor, "queue-files")
        directory = queue_directory(config.queue.directory, p.worker)
        # Spare files made ahead through the same thread, and delivered messages' files reused for new ones.
        store = QueueStore(directory, queue_files.call, queue_files.post, spares=SpareFiles(directory, queue_files.call))
        # The hub's SMTP Send Protocol Log (<dir>/Hub/SmtpSend), for the connectors that say Verbose.
        # Made whether or not one does now (its file is created at the first line): a reload may add one.
        send_log = p.logs.make("Hub", "SEND")
        timeouts = config.queue.delivery_timeouts()
        # A DKIM signature stored with a message goes in front of it on its way out (gateway/sign/dkim.py).
        deliverers = Deliverers(
            SignedDelivery(self.mailbox_delivery(send_log, timeouts), local=True),
            lambda c: SignedDelivery(self.send_connector_delivery(c, send_log, timeouts)),
        )
        tracking = p.logs.tracking()
        # One id sequence for messages and the notices about them, so a notice never reuses a queue id.
        ids = InternalIds(reactor, lambda: store.highest_id, p.worker, config.workers)
        # The scheduler tells the notifier what to send, and each notice queues through the
        # scheduler: made next, so reached through a call, not an attribute set afterwards.
        scheduler: DeliveryScheduler

        def enqueue(*args: Any, **kw: Any) -> None:
            scheduler.enqueue(*args, **kw)

        notifier = Notifier(
            store, ids, reactor, config.fqdn, p.run_in_thread, enqueue,
            limit=NoticeLimit(reactor, config.queue.max_ndrs_per_sender_domain), tracking=tracking,
        )
        scheduler = DeliveryScheduler(
            store, p.live.router, deliverers, reactor, config.queue.retry_policy(), config.queue.max_concurrent_deliveries,
            notifier=notifier, max_per_hop=config.queue.max_deliveries_per_next_hop, tracking=tracking, metrics=p.metrics,
        )
        p.live.follow_routes(scheduler)
        orphans: Callable[[], list[Path]] = (
            (lambda: orphaned_queues(config.queue.directory, config.workers)) if p.worker == 0 else list
        )
        queue = QueueService(
            store, scheduler, deliverers, (config.mailbox.maildir,) if config.mailbox.delivery == "maildir" else (), orphans
        )
        # Back pressure: MAIL refused (452 4.3.1) below min_free_space in the queue's file system, until 1.5 times that,
        # and above max_memory_percent of physical memory in use, until 1.5 times the available share at the limit.
        pressure = BackPressure(
            lambda: shutil.disk_usage(store.directory).free, reactor, config.min_free_space, where=str(store.directory),
            memory=meminfo, max_memory_percent=config.max_memory_percent,
        )
        intake = IntakeHandler(
            store, p.live.router, scheduler, reactor, config.fqdn, p.worker, config.workers, ids=ids, tracking=tracking, pressure=pressure,
        )
        p.live.follow_routes(intake)
        listeners = p.listeners("hub", intake, p.logs.make("Hub", "RECV"), p.node)
        return Hub([queue_files, queue, pressure, *listeners], store, scheduler, intake, pressure, listeners)


@dataclass(frozen=True)
class Frontend:
    """What FrontendBuilder made: `services` in the order they are added; the hub pools only for role frontend."""

    services: list[Service]
    listeners: list[Listener]
    probe_pool: ConnectionPool | None


class FrontendBuilder:
    """The client side: the frontend connectors' listeners, and for a frontend-only process its pools to the hubs."""

    def __init__(self, process: Process) -> None:
        self.process = process

    def build_local(self, intake: IntakeHandler) -> Frontend:
        """
        Frontend and hub in one process: the frontend connectors hand each
        message to this process's own intake (the hub's funnel into the
        queue) instead of to the hub port over loopback SMTP. The 250 still
        waits for the queue's fsync; the hub connector still serves other
        frontends.
        """
        p = self.process
        listeners = p.listeners("frontend", intake, p.logs.make("FrontEnd", "RECV"), None)
        return Frontend(list(listeners), listeners, None)

    def build_proxy(self) -> Frontend:
        """A frontend-only process: messages go to the hub pool, and its spool holds bodies too large to keep in memory."""
        p = self.process
        config, reactor = p.config, p.reactor
        spool = config.var_dir / "spool"
        hp = config.hub_pool
        # A hub that stops answering (frozen) is failed over after reply_timeout; one that does not greet, after connect_timeout.
        hub_timeouts = replace(PhaseTimeouts.uniform(hp.reply_timeout), greeting=min(hp.connect_timeout, hp.reply_timeout))
        pool = ConnectionPool(
            reactor, hp.hosts, config.fqdn, hp.connect_timeout, hp.idle_connections,
            protocol_log=p.logs.make("FrontEnd", "SEND") if hp.protocol_logging_level == "Verbose" else None,
            connector_id="Hub Pool", resolver=p.resolver, health=p.health, reply_timeout=hp.reply_timeout, timeouts=hub_timeouts,
            security=OutboundSecurity(tls="none", node=p.node),
        )
        # Readiness probes the hubs on connections of its own, each wait HUB_PROBE_TIMEOUT (sharing what they learn through `health`).
        # It presents the node secret too: a hub that refuses this node's secret is no hub for it.
        probe_pool = ConnectionPool(
            reactor, hp.hosts, config.fqdn, HUB_PROBE_TIMEOUT, 0, resolver=p.resolver, health=p.health,
            timeouts=PhaseTimeouts.uniform(HUB_PROBE_TIMEOUT), security=OutboundSecurity(tls="none", node=p.node),
        )
        listeners = p.listeners("frontend", ProxyHandler(pool, spool), p.logs.make("FrontEnd", "RECV"), None)
        return Frontend([DirectoryService(spool), HubPoolService(pool), *listeners], listeners, probe_pool)


def _endpoint(reactor: Any, binding: Binding):
    if binding.ipv6:
        return TCP6ServerEndpoint(reactor, binding.port, backlog=LISTEN_BACKLOG, interface=binding.host)
    return TCP4ServerEndpoint(reactor, binding.port, backlog=LISTEN_BACKLOG, interface=binding.host)


class AdminBuilder:
    """
    What an admin reaches: the admin socket (queue commands, reload), the
    pid file, the health and metrics port, SIGHUP, the start-up lines, and
    on worker 0 of several the supervisor of the others (last, so it stops
    first: the other workers finish before this one's listeners close).
    """

    def __init__(
        self, process: Process, role: str, config_path: Path, config_source: str, tls: TLSProvider | None, hub: Hub | None,
        listeners: list[Listener], probe_pool: ConnectionPool | None,
    ) -> None:
        self.process = process
        self.role = role
        self.config_path = config_path
        self.config_source = config_source
        self.tls = tls
        self.hub = hub
        self.listeners = listeners
        self.probe_pool = probe_pool

    def health_listen(self) -> Binding | None:
        """Where this process answers health checks: worker 0 answers for the node; a frontend-only process may listen apart."""
        config = self.process.config
        if self.process.worker != 0:
            return None
        if self.role == "frontend" and config.health_frontend_listen is not None:
            return config.health_frontend_listen
        return config.health_listen

    def build(self) -> tuple[list[Service], WorkerSupervisor | None]:
        p = self.process
        config, reactor, worker, role = p.config, p.reactor, p.worker, self.role
        scheduler = self.hub.scheduler if self.hub is not None else None
        store = self.hub.store if self.hub is not None else None
        pressure = self.hub.pressure if self.hub is not None else None
        # The queue commands talk to admin.sock; a frontend-only process beside a hub on one var_dir gets its own.
        base_socket = config.admin_socket if role != "frontend" else config.admin_socket.with_name("admin-frontend.sock")
        socket_path = admin_socket(base_socket, worker)
        services: list[Service] = [PrivateDirectoryService(socket_path.parent)]
        if worker == 0:
            services.append(PidFileService(base_socket.with_name("exgateway-frontend.pid" if role == "frontend" else "exgateway.pid")))
        supervisor = None
        if worker == 0 and config.workers > 1:
            supervisor = WorkerSupervisor(
                reactor, config.workers, child_argv(self.config_path, role), self.listeners, config.shutdown_grace + 10.0
            )
        reload = ReloadOnHangup(p.live, reactor, forward=supervisor.reload_all if supervisor is not None else None)
        # `exgateway reload` asks worker 0, which passes it on like a SIGHUP and answers with what happened.
        services.append(admin_service(
            reactor, socket_path, scheduler, store, config.server_name, p.state, p.metrics,
            reload=reload.reload_now if worker == 0 else None, config_path=config.path,
        ))
        if p.metrics is not None:
            p.metrics.watch(scheduler, p.health, self.tls, config.server_name)
            if pressure is not None:
                p.metrics.registry.register(pressure)
        health_listen = self.health_listen()
        if health_listen is not None and p.metrics is not None:
            readiness = Readiness(
                p.state, store.directory if store is not None else None, config.min_free_space, self.probe_pool, p.run_in_thread, reactor,
                pressure=pressure,
            )
            metrics_page: IResource
            if config.workers > 1:
                others = [(w, admin_socket(base_socket, w)) for w in range(1, config.workers)]
                metrics_page = NodeMetrics(p.metrics.registry, others, p.run_in_thread)
            else:
                metrics_page = p.metrics.resource()
            service = ListeningService(_endpoint(reactor, health_listen), health_site(readiness, metrics_page))
            service.setName(f"health {health_listen}")
            services.append(service)
        services.append(reload)
        services.append(StartupLines(config, role, self.config_source, self.listeners, self.tls, health_listen, worker, socket_path))
        if supervisor is not None:
            services.append(supervisor)
        elif worker > 0:
            services.append(ParentLink(reactor, p.live.reload))
        return services, supervisor


def build_service(
    config: Config, role: str, reactor: Any, worker: int = 0, config_path: Path | None = None, config_source: str = "--config",
    log_observer: Any = None,
) -> GatewayService:
    """Assemble the gateway's services for one config, role and worker (gateway/workers.py)."""
    inherited = inherited_sockets() if worker > 0 else {}
    number_sessions_as(worker, config.workers)
    roles = ("frontend", "hub") if role == "all" else (role,)
    pool_threads = reactor.getThreadPool()

    def run_in_thread(f, *args):
        return threads.deferToThreadPool(reactor, pool_threads, f, *args)

    services: list[Service] = []
    tls = None
    make_auth = None
    if role in ("all", "frontend"):
        tls = TLSProvider(CertificateStore(config.certificate_dir), reactor)
        # argon2 in threads of its own, bounded (64 MiB each), never the shared pool the queue writes through.
        verify_pool = VerifyPool(reactor)
        services += [CertificateService(tls, config), verify_pool]

        def make_auth(new_config: Config, previous):
            """AUTH for the frontend: rebuilt at each reload, keeping the brute-force counts."""
            return build_auth(
                new_config.auth, reactor, verify_pool.run, previous.throttle if previous else None, config.limits.ipv6_source_prefix
            )

    # Recipient validation for the hub's RCPT and routing, rebuilt at each reload.
    make_recipients: Callable[[Config], Any] | None = (lambda c: build_recipient_validator(c, reactor)) if role in ("all", "hub") else None
    live = LiveConfig(config, config.path, roles, tls=tls, make_auth=make_auth, make_recipient_exists=make_recipients)
    # How the tiers authenticate each other: the hub checks it, the frontend's hub pool presents it.
    node = NodeCredential(config.node_secret_file, config.server_name)
    logs = ProtocolLogs(config, reactor)
    services += [NodeSecretService(node), ProtocolLogService(logs.logs, reactor)]
    # Prometheus metrics, served beside the health endpoints (so only where those listen).
    node_health = config.health_listen
    if role == "frontend" and config.health_frontend_listen is not None:
        node_health = config.health_frontend_listen
    process = Process(
        config=config, reactor=reactor, worker=worker, live=live,
        # Shared by every listener and kept across reloads: counts per connector and client.
        limits=ConnectionLimits(config.limits.ipv6_source_prefix, config.limits.junk_command_limit),
        # Drain state (a file: survives restarts).
        state=NodeState(config.var_dir / "draining"),
        sessions=Sessions(),
        metrics=Metrics() if node_health is not None else None,
        # One resolver and one view of next-hop health per process: hub pool, smart hosts and MX alike.
        resolver=MXResolver(make_resolver(config.dns, reactor)), health=AddressHealth(reactor),
        logs=logs, node=node, run_in_thread=run_in_thread, inherited=inherited,
    )
    hub = frontend = None
    if role in ("all", "hub"):
        hub = HubBuilder(process).build()
        services += hub.services
    if role == "all" and hub is not None:
        frontend = FrontendBuilder(process).build_local(hub.intake)
    elif role == "frontend":
        frontend = FrontendBuilder(process).build_proxy()
    if frontend is not None:
        services += frontend.services
    listeners = (hub.listeners if hub is not None else []) + (frontend.listeners if frontend is not None else [])
    admin, supervisor = AdminBuilder(
        process, role, config_path or config.path, config_source, tls, hub, listeners,
        frontend.probe_pool if frontend is not None else None,
    ).build()
    top = GatewayService(reactor, config.shutdown_grace, process.sessions, listeners, supervisor, log_observer)
    for service in services + admin:
        service.setServiceParent(top)
    return top
