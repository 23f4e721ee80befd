"""
twistd's entry: `twistd -n exgateway [--config FILE] [--role all|frontend|hub]`.

`Options` parses and validates (a bad config stops start-up here, with every
problem listed); `makeService` only assembles. Directories are created and
ports bound when the services start, so twistd can bind 25 as root before
dropping privileges. Services stop in reverse order of addition: the queue
and delivery are added first and the listeners last, so a stop closes
intake before the queue.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from twisted.application.service import MultiService, Service
from twisted.internet import threads
from twisted.internet.defer import DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.python import usage

from gateway.admin.api import admin_service
from gateway.admin.health import HUB_PROBE_TIMEOUT, NodeState, Readiness, health_site
from gateway.admin.metrics import Metrics, NodeMetrics
from gateway.fastpath import dispatch
from gateway.files import PRIVATE_DIRECTORY, make_directory
from gateway.listenservice import ListeningService
from gateway.config import Config, ConfigError, load_config, path_problems
from gateway.configpath import find_config
from gateway.deliver.maildir import MaildirDelivery
from gateway.deliver.health import AddressHealth
from gateway.deliver.mx import MXDelivery
from gateway.deliver.resolve import MXResolver, make_resolver
from gateway.deliver.security import connector_security
from gateway.deliver.smtp import SMTPDelivery
from gateway.deliver.timeouts import PhaseTimeouts
from gateway.intake import IntakeHandler
from gateway.deliver.pool import ConnectionPool
from gateway.proxy import ProxyHandler
from gateway.queue.noticelimit import NoticeLimit
from gateway.queue.notify import Notifier
from gateway.queue.scheduler import DeliveryScheduler
from gateway.queue.view import MAILBOX_QUEUE
from gateway.queue.store import QueueStore
from gateway.logs.protocol import ProtocolLog, ProtocolLogService
from gateway.logs.tracking import TrackingLog
from gateway.policy.backpressure import BackPressure, meminfo
from gateway.policy.limits import ConnectionLimits
from gateway.policy.recipients import build_recipient_validator
from gateway.reload import LiveConfig, ReloadOnHangup
from gateway.serialthread import SerialThread
from gateway.deliver.registry import Deliverers
from gateway.sign.dkim import SignedDelivery
from gateway.smtpd.factory import BindingFactory
from gateway.smtpd.shutdown import Sessions, close_intake
from gateway.startup import StartupLines, install_observer, log_observer
from gateway.smtpd.session import number_sessions_as
from gateway.auth.node import NodeCredential, NodeSecretService
from gateway.auth.service import build_auth
from gateway.auth.verifypool import VerifyPool
from gateway.tls.check import certificate_problems
from gateway.deliver.security import OutboundSecurity
from gateway.tls.provider import TLSProvider
from gateway.tls.store import CertificateError, CertificateStore
from gateway.workers import (
    LISTEN_BACKLOG, Listener, ParentLink, WorkerSupervisor, admin_socket, child_argv, inherited_sockets, orphaned_queues,
    queue_directory,
)

ROLES = ("all", "frontend", "hub")


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "Config file (default: $EXGATEWAY_CONFIG, else /etc/exgateway/exgateway.toml, "
                              "else ./exgateway.toml, else the packaged sample)."],
        ["role", "r", "all", "Which tier to run: all, frontend or hub."],
        ["worker", None, "0", "Set by the gateway for its own worker processes ([server] workers); not for admins."],
    ]

    def postOptions(self) -> None:
        if self["role"] not in ROLES:
            raise usage.UsageError(f"--role must be one of {', '.join(ROLES)}, not {self['role']!r}")
        if not self["worker"].isdigit() or (int(self["worker"]) > 0 and not inherited_sockets()):
            raise usage.UsageError("--worker is set by the gateway for the worker processes it starts; leave it out")
        self["worker"] = int(self["worker"])
        location = find_config(self["config"])
        try:
            config = load_config(location.path)
            problems = path_problems(config)
            if problems:
                raise ConfigError(problems)
        except ConfigError as e:
            # Not a usage error: twistd's whole Usage block would bury the reason.
            raise SystemExit("\n".join(f"exgateway: not started: {p}" for p in e.problems)) from None
        # Workers are handed this absolute path: every process of the node reads the same file.
        self["config"] = location.path
        self["config_source"] = location.source
        self["gateway_config"] = config


def make_directories(*paths: Path, mode: int = PRIVATE_DIRECTORY) -> None:
    """Create what the gateway writes to (0700 whatever the umask); a failure stops start-up with one clear line, not a traceback."""
    for path in paths:
        try:
            make_directory(path, mode)
        except OSError as e:
            raise SystemExit(f"exgateway: cannot create {path}: {e.strerror} (check server.var_dir and the paths under it)") from None


class QueueService(Service):
    """The hub's queue: recover on start (worker 0 first takes in the queues of workers no longer run), then deliver."""

    def __init__(self, store: QueueStore, scheduler: DeliveryScheduler, extra_dirs: tuple[Path, ...] = (), orphans=lambda: []) -> None:
        self.store = store
        self.scheduler = scheduler
        self.extra_dirs = extra_dirs
        self.orphans = orphans

    def startService(self) -> None:
        make_directories(self.store.directory, *self.extra_dirs)
        for directory in self.orphans():
            self.store.adopt(directory)
        envelopes = self.store.recover()
        self.scheduler.start(envelopes)
        super().startService()

    def stopService(self):
        self.scheduler.stop()
        self.scheduler.deliverers.close()
        self.store.stop()
        return super().stopService()


class DirectoryService(Service):
    def __init__(self, *dirs: Path) -> None:
        self.dirs = dirs

    def startService(self) -> None:
        make_directories(*self.dirs)
        super().startService()


class PrivateDirectoryService(Service):
    """
    A directory only the gateway's user may enter (where the admin sockets
    live). Made after twistd drops privileges, as the admin sockets are: they
    belong to the service user, whose other workers make theirs there too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def startService(self) -> None:
        # Before the admin socket binds (the next service).
        make_directories(self.path)
        self.path.chmod(0o700)
        super().startService()


class PidFileService(Service):
    """
    Worker 0's process id in var_dir (`var/run/exgateway.pid`), where the
    config file leads: `kill -TERM $(cat var/run/exgateway.pid)` from any
    directory, unlike twistd's own ./twistd.pid.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def startService(self) -> None:
        self.path.write_text(f"{os.getpid()}\n")
        super().startService()

    def stopService(self):
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return super().stopService()


class GatewayService(MultiService):
    """
    The whole process. A stop closes intake first and waits for the messages
    in flight (gateway/smtpd/shutdown.py), and passes the stop on to the other
    workers at once; only then do its services stop (the queue after the
    last 250, the logs flushed last).
    """

    def __init__(self, reactor) -> None:
        super().__init__()
        self.reactor = reactor
        self.listeners: list[Listener] = []
        self.sessions = Sessions()
        self.grace = 30.0
        self.supervisor: WorkerSupervisor | None = None
        # The filtered log observer for twistd (gateway/startup.py), handed to the application twistd makes.
        self.log_observer = None

    def setServiceParent(self, parent):
        install_observer(parent, self.log_observer)
        return super().setServiceParent(parent)

    def stopService(self):
        first = [close_intake(self.listeners, self.sessions, self.reactor, self.grace)]
        if self.supervisor is not None:
            first.append(maybeDeferred(self.supervisor.stopService))
        d = DeferredList(first)
        d.addCallback(lambda _: MultiService.stopService(self))
        return d


class HubPoolService(Service):
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def stopService(self):
        self.pool.close()
        return super().stopService()


def _endpoint(reactor, binding):
    if binding.ipv6:
        return TCP6ServerEndpoint(reactor, binding.port, backlog=LISTEN_BACKLOG, interface=binding.host)
    return TCP4ServerEndpoint(reactor, binding.port, backlog=LISTEN_BACKLOG, interface=binding.host)


def _listeners(
    parent: MultiService, reactor, live: LiveConfig, role: str, handler, limits: ConnectionLimits, plog: ProtocolLog, state: NodeState,
    metrics=None, inherited: dict[str, int] | None = None, node=None,
) -> list[Listener]:
    """One Listener per binding of this role's connectors: bound here, or inherited from worker 0."""
    bindings = []
    for c in live.config.connectors(role):
        if c.enabled:
            bindings += [b for b in c.bindings if b not in bindings]
    listeners = []
    for binding in bindings:
        factory = BindingFactory(binding, role, (), handler, live.policy, reactor, limits, plog)
        factory.state = state
        factory.metrics = metrics
        factory.sessions = getattr(parent, "sessions", None)
        factory.node = node
        live.attach(factory)
        fd = (inherited or {}).get(str(binding))
        if inherited and fd is None:
            raise SystemExit(f"exgateway: worker 0 passed no socket for {binding}; restart the gateway")
        service = Listener(reactor, binding, factory, fd)
        service.setName(f"listen {binding}")
        service.setServiceParent(parent)
        listeners.append(service)
    return listeners


class CertificateService(Service):
    """
    Reads the certificate store at start; with none in it, makes the
    self-signed one for the FQDN. A TLS connector whose certificate cannot
    be found stops start-up with its name and the reason, rather than
    failing every STARTTLS later.
    """

    def __init__(self, tls: TLSProvider, config: Config) -> None:
        self.tls = tls
        self.config = config

    def startService(self) -> None:
        store = self.tls.store
        make_directories(store.directory)
        try:
            store.ensure_default(self.config.fqdn, self.tls.now())
        except OSError as e:
            raise SystemExit(f"exgateway: cannot write the certificate store {store.directory}: {e.strerror}") from None
        self.tls.reload()
        # The check config check and reload make (gateway/tls/check.py), with every problem named.
        problems = certificate_problems(self.config, store)
        if problems:
            raise SystemExit("exgateway: the certificate store cannot serve this configuration:\n" + "\n".join(f"  {p}" for p in problems))
        for c in self.config.connectors("frontend"):
            if c.enabled and c.uses_tls:
                try:
                    self.tls.options_for(c)
                except CertificateError as e:
                    raise SystemExit(f"exgateway: receive connector '{c.identity}' cannot serve TLS: {e}") from None
        super().startService()


def build_service(
    config: Config, role: str, reactor, worker: int = 0, config_path: Path | None = None, config_source: str = "--config",
) -> MultiService:
    """Assemble the gateway's services for one config, role and worker (gateway/workers.py)."""
    top = GatewayService(reactor)
    top.grace = config.shutdown_grace
    inherited = inherited_sockets() if worker > 0 else {}
    number_sessions_as(worker, config.workers)
    roles = ("frontend", "hub") if role == "all" else (role,)
    pool_threads = reactor.getThreadPool()

    def run_in_thread(f, *args):
        return threads.deferToThreadPool(reactor, pool_threads, f, *args)

    def make_auth(new_config: Config, previous):
        """AUTH for the frontend: rebuilt at each reload, keeping the brute-force counts."""
        return build_auth(
            new_config.auth, reactor, verify_pool.run, previous.throttle if previous else None, config.limits.ipv6_source_prefix
        )

    # Drain state (a file: survives restarts); the hub's queue and the frontend's hub pool, where this role has them.
    state = NodeState(config.var_dir / "draining")
    # Prometheus metrics, served beside the health endpoints (so only where those listen).
    node_health = config.health_listen
    if role == "frontend" and config.health_frontend_listen is not None:
        node_health = config.health_frontend_listen
    # Worker 0 answers for the node; the others keep metrics for it to gather (their admin sockets).
    health_listen = node_health if worker == 0 else None
    metrics = Metrics() if node_health is not None else None
    scheduler = store = pool = probe_pool = pressure = None
    tls = None
    if role in ("all", "frontend"):
        tls = TLSProvider(CertificateStore(config.certificate_dir), reactor)
        CertificateService(tls, config).setServiceParent(top)
        # argon2 in threads of its own, bounded (64 MiB each), never the shared pool the queue writes through.
        verify_pool = VerifyPool(reactor)
        verify_pool.setServiceParent(top)
    # Recipient validation for the hub's RCPT and routing, rebuilt at each reload.
    make_recipients = (lambda c: build_recipient_validator(c, reactor)) if role in ("all", "hub") else None
    live = LiveConfig(
        config, config.path, roles, tls=tls, make_auth=make_auth if tls is not None else None, make_recipient_exists=make_recipients
    )
    # Shared by every listener and kept across reloads: counts per connector and client.
    limits = ConnectionLimits(config.limits.ipv6_source_prefix, config.limits.junk_command_limit)
    # How the tiers authenticate each other: the hub checks it, the frontend's hub pool presents it.
    node = NodeCredential(config.node_secret_file, config.server_name)
    NodeSecretService(node).setServiceParent(top)
    protocol_logs: list[ProtocolLog] = []
    listeners: list[Listener] = []

    def protocol_log(tier: str, kind: str) -> ProtocolLog:
        """Exchange keeps front end and hub logs apart: <dir>/FrontEnd/SmtpReceive, <dir>/Hub/SmtpReceive, .../SmtpSend."""
        plc = config.protocol_log
        folder = "SmtpReceive" if kind == "RECV" else "SmtpSend"
        plog = ProtocolLog(plc.directory / tier / folder, kind, reactor, plc.max_file_size, plc.max_age, plc.max_directory_size)
        protocol_logs.append(plog)
        return plog

    ProtocolLogService(protocol_logs, reactor).setServiceParent(top)
    # One resolver and one view of next-hop health per process: hub pool, smart hosts and MX alike.
    resolver = MXResolver(make_resolver(config.dns, reactor))
    health = AddressHealth(reactor)

    if role in ("all", "hub"):
        # The queue's file work in one thread of its own; started before the queue service, so stopped after it.
        queue_files = SerialThread(reactor, "queue-files")
        queue_files.setServiceParent(top)
        store = QueueStore(queue_directory(config.queue.directory, worker), queue_files.call, queue_files.post)
        # The hub's SMTP Send Protocol Log (<dir>/Hub/SmtpSend), for the connectors that say Verbose.
        # Made whether or not one does now (its file is created at the first line): a reload may add one.
        send_log = protocol_log("Hub", "SEND")
        timeouts = config.queue.delivery_timeouts()
        if config.mailbox.delivery == "smtp":
            mailbox = SMTPDelivery(
                reactor, (config.mailbox.next_hop,), config.fqdn,
                protocol_log=send_log if config.mailbox.protocol_logging_level == "Verbose" else None, connector_id=MAILBOX_QUEUE,
                security=config.mailbox.security(),
                timeouts=timeouts,
            )
        else:
            mailbox = MaildirDelivery(config.mailbox.maildir, run_in_thread, reactor, config.mailbox.max_mailboxes)

        def send_connector_delivery(connector):
            """Smart hosts in order (names expanded to every address), or DNS MX routing."""
            plog = send_log if connector.protocol_logging_level == "Verbose" else None
            security = connector_security(connector, config.certificate_dir, reactor)
            if connector.dns_routing:
                return MXDelivery(reactor, resolver, connector, health, plog, timeouts, security)
            pool = ConnectionPool(
                reactor, connector.smart_hosts, connector.fqdn, connector.connection_timeout, 16,
                resolver=resolver, health=health, rotate=False, security=security,
                max_connections=connector.max_connections, max_messages=connector.max_messages_per_connection,
                protocol_log=plog, connector_id=connector.name,
                timeouts=timeouts,
            )
            return SMTPDelivery(reactor, connector.smart_hosts, connector.fqdn, pool=pool, max_message_size=connector.max_message_size)

        # A DKIM signature stored with a message goes in front of it on its way out (gateway/sign/dkim.py).
        deliverers = Deliverers(SignedDelivery(mailbox, local=True), lambda c: SignedDelivery(send_connector_delivery(c)))
        scheduler = DeliveryScheduler(
            store, live.router, deliverers, reactor, config.queue.retry_policy(), config.queue.max_concurrent_deliveries,
            max_per_hop=config.queue.max_deliveries_per_next_hop,
        )
        live.follow_routes(scheduler)
        orphans = (lambda: orphaned_queues(config.queue.directory, config.workers)) if worker == 0 else (lambda: [])
        QueueService(
            store, scheduler, (config.mailbox.maildir,) if config.mailbox.delivery == "maildir" else (), orphans
        ).setServiceParent(top)
        intake = IntakeHandler(store, live.router, scheduler, reactor, config.fqdn, worker, config.workers)
        # Back pressure: MAIL refused (452 4.3.1) below min_free_space in the queue's file system, until 1.5 times that,
        # and above max_memory_percent of physical memory in use, until 1.5 times the available share at the limit.
        pressure = BackPressure(
            lambda: shutil.disk_usage(store.directory).free, reactor, config.min_free_space, where=str(store.directory),
            memory=meminfo, max_memory_percent=config.max_memory_percent,
        )
        pressure.setServiceParent(top)
        intake.pressure = pressure
        scheduler.notifier = Notifier(store, intake.ids, reactor, config.fqdn, run_in_thread, scheduler.enqueue)
        scheduler.notifier.limit = NoticeLimit(reactor, config.queue.max_ndrs_per_sender_domain)
        mt = config.message_tracking
        if mt.enabled:
            tracking = TrackingLog(mt.directory, reactor, config.fqdn, mt.max_file_size, mt.max_age, mt.max_directory_size)
            protocol_logs.append(tracking)
            intake.tracking = scheduler.tracking = scheduler.notifier.tracking = tracking
        live.follow_routes(intake)
        scheduler.metrics = metrics
        listeners += _listeners(top, reactor, live, "hub", intake, limits, protocol_log("Hub", "RECV"), state, metrics, inherited, node)

    if role == "all":
        # Frontend and hub in one process: the frontend connectors hand each
        # message to this process's own intake (the hub's funnel into the
        # queue) instead of to the hub port over loopback SMTP. The 250
        # still waits for the queue's fsync; the hub connector still serves
        # other frontends.
        listeners += _listeners(top, reactor, live, "frontend", intake, limits, protocol_log("FrontEnd", "RECV"), state, metrics, inherited)
    elif role == "frontend":
        spool = config.var_dir / "spool"
        DirectoryService(spool).setServiceParent(top)
        hp = config.hub_pool
        # A hub that stops answering (frozen) is failed over after reply_timeout; one that does not greet, after connect_timeout.
        hub_timeouts = replace(PhaseTimeouts.uniform(hp.reply_timeout), greeting=min(hp.connect_timeout, hp.reply_timeout))
        pool = ConnectionPool(
            reactor, hp.hosts, config.fqdn, hp.connect_timeout, hp.idle_connections,
            protocol_log=protocol_log("FrontEnd", "SEND") if hp.protocol_logging_level == "Verbose" else None,
            connector_id="Hub Pool", resolver=resolver, health=health, reply_timeout=hp.reply_timeout, timeouts=hub_timeouts,
            security=OutboundSecurity(tls="none", node=node),
        )
        # Readiness probes the hubs on connections of its own, each wait HUB_PROBE_TIMEOUT (sharing what they learn through `health`).
        # It presents the node secret too: a hub that refuses this node's secret is no hub for it.
        probe_pool = ConnectionPool(
            reactor, hp.hosts, config.fqdn, HUB_PROBE_TIMEOUT, 0, resolver=resolver, health=health,
            timeouts=PhaseTimeouts.uniform(HUB_PROBE_TIMEOUT), security=OutboundSecurity(tls="none", node=node),
        )
        HubPoolService(pool).setServiceParent(top)
        listeners += _listeners(
            top, reactor, live, "frontend", ProxyHandler(pool, spool), limits, protocol_log("FrontEnd", "RECV"), state, metrics, inherited
        )
    # The queue commands talk to admin.sock; a frontend-only process beside a hub on one var_dir gets its own.
    base_socket = config.admin_socket if role != "frontend" else config.admin_socket.with_name("admin-frontend.sock")
    socket_path = admin_socket(base_socket, worker)
    PrivateDirectoryService(socket_path.parent).setServiceParent(top)
    if worker == 0:
        PidFileService(base_socket.with_name("exgateway-frontend.pid" if role == "frontend" else "exgateway.pid")).setServiceParent(top)
    api = admin_service(reactor, socket_path, scheduler, store, config.server_name, state, metrics, config_path=config.path)
    api.setServiceParent(top)
    if metrics is not None:
        metrics.watch(scheduler, health, tls, config.server_name)
        if pressure is not None:
            metrics.registry.register(pressure)
    if health_listen is not None:
        readiness = Readiness(
            state, store.directory if store is not None else None, config.min_free_space, probe_pool, run_in_thread, reactor
        )
        readiness.pressure = pressure
        if config.workers > 1:
            others = [(w, admin_socket(base_socket, w)) for w in range(1, config.workers)]
            metrics_page = NodeMetrics(metrics.registry, others, run_in_thread)
        else:
            metrics_page = metrics.resource()
        service = ListeningService(_endpoint(reactor, health_listen), health_site(readiness, metrics_page))
        service.setName(f"health {health_listen}")
        service.setServiceParent(top)
    reload = ReloadOnHangup(live, reactor)
    reload.setServiceParent(top)
    if worker == 0:
        # `exgateway reload` asks worker 0, which passes it on like a SIGHUP and answers with what happened.
        api.factory.resource.reload = reload.reload_now
    StartupLines(config, role, config_source, listeners, tls, health_listen, worker, socket_path).setServiceParent(top)
    if worker == 0 and config.workers > 1:
        # Last, so it stops first: the other workers finish before this one's listeners close.
        supervisor = WorkerSupervisor(
            reactor, config.workers, child_argv(config_path or config.path, role), listeners, config.shutdown_grace + 10.0
        )
        supervisor.setServiceParent(top)
        top.supervisor = supervisor
        reload.forward = supervisor.reload_all
    elif worker > 0:
        ParentLink(reactor, live.reload).setServiceParent(top)
    top.listeners = listeners
    return top


def makeService(options: Options):
    from twisted.internet import reactor

    dispatch.install(reactor)
    top = build_service(
        options["gateway_config"], options["role"], reactor, options["worker"], options["config"], options["config_source"]
    )
    top.log_observer = log_observer(getattr(options, "parent", None), options["worker"])
    return top
