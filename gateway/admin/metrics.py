"""
Prometheus metrics at /metrics on the health listener (prometheus-client).

Counters and histograms are updated where things happen (sessions, replies,
AUTH, delivery attempts); queue depth, next-hop health and certificate
expiry are read from the live objects when Prometheus scrapes, so they are
never stale and cost nothing between scrapes. Each gateway process has its
own registry, not the library's global one.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.twisted import MetricsResource
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from gateway.admin.queues import call
from gateway.queue import view

log = Logger(namespace="exgateway.metrics")


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.connections = Counter("exgateway_connections", "Connections accepted, by receive connector", ["connector"], registry=r)
        self.sessions = Gauge("exgateway_sessions", "SMTP sessions open now, by receive connector", ["connector"], registry=r)
        self.accepted = Counter("exgateway_messages_accepted", "Messages answered 250 at end of data", ["connector"], registry=r)
        self.rejected = Counter("exgateway_replies_rejected", "4xx and 5xx replies sent, by code", ["connector", "code"], registry=r)
        self.auth = Counter("exgateway_auth", "AUTH attempts by mechanism and result", ["mechanism", "result"], registry=r)
        self.deliveries = Counter("exgateway_delivery_attempts", "Recipient delivery attempts by next hop and outcome",
                                  ["next_hop", "outcome"], registry=r)
        self.delivery_seconds = Histogram("exgateway_delivery_seconds", "Time of one delivery attempt to a next hop", ["next_hop"],
                                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        # The children every session and delivery updates, looked up once per
        # label value: `labels()` takes a lock and validates on every call.
        self.for_connector = lru_cache(maxsize=None)(self._for_connector)
        self.delivery = lru_cache(maxsize=None)(self.deliveries.labels)
        self.delivery_time = lru_cache(maxsize=None)(self.delivery_seconds.labels)

    def _for_connector(self, connector: str) -> SimpleNamespace:
        return SimpleNamespace(
            connections=self.connections.labels(connector),
            sessions=self.sessions.labels(connector),
            accepted=self.accepted.labels(connector),
        )

    def watch(self, scheduler=None, health=None, tls=None, server_name: str = "") -> None:
        """Read queue depth, address health and certificate expiry at each scrape."""
        self.registry.register(_Live(scheduler, health, tls, server_name))

    def resource(self) -> resource.IResource:
        # prometheus_client's MetricsResource is a function (it makes a WSGIResource).
        return MetricsResource(registry=self.registry)


class _Live:
    def __init__(self, scheduler, health, tls, server_name: str) -> None:
        self.scheduler = scheduler
        self.health = health
        self.tls = tls
        self.server_name = server_name

    def collect(self):
        if self.scheduler is not None:
            depth = GaugeMetricFamily("exgateway_queue_messages", "Messages waiting, by queue (next hop) and status",
                                      labels=["queue", "status"])
            for q in view.queues(self.scheduler, self.server_name):
                depth.add_metric([q["Name"], q["Status"]], q["MessageCount"])
            yield depth
        if self.health is not None:
            up = GaugeMetricFamily("exgateway_next_hop_up", "1 if the address (hub, smart host, MX) is not marked bad", labels=["address"])
            for address, good in self.health.known():
                up.add_metric([str(address)], 1.0 if good else 0.0)
            yield up
        if self.tls is not None:
            expiry = GaugeMetricFamily("exgateway_certificate_not_after_seconds", "When each certificate in the store expires (Unix time)",
                                       labels=["thumbprint", "subject"])
            # A file's companion (its ECDSA certificate beside the RSA one) is served too: it expires on its own.
            for stored in self.tls.store.certificates:
                for cert in (stored, *stored.companions):
                    expiry.add_metric([cert.thumbprint, cert.subject], cert.not_after.timestamp())
            yield expiry


def merged_text(pages: list[tuple[int, str | None]]) -> bytes:
    """
    The Prometheus pages of a node's workers as one page: every sample gets
    a `worker` label (sum over it for the node), each family is announced
    once, and `exgateway_worker_up` says which workers answered (None: not).
    """
    families: dict[str, Metric] = {}
    up = GaugeMetricFamily("exgateway_worker_up", "1 if the worker process answered this scrape", labels=["worker"])
    for worker, text in pages:
        up.add_metric([str(worker)], 0.0 if text is None else 1.0)
        for family in text_string_to_metric_families(text or ""):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            merged.samples += [s._replace(labels={**s.labels, "worker": str(worker)}) for s in family.samples]

    class _Page:
        @staticmethod
        def collect():
            return [up, *families.values()]

    return generate_latest(_Page())


def fetch_pages(sockets: list) -> list[tuple[int, str | None]]:
    """Blocking (run it in a thread): each worker's /metrics from its admin socket; None for one that does not answer."""
    pages = []
    for worker, path in sockets:
        try:
            status, body = call(path, "GET", "/metrics", timeout=2.0)
            pages.append((worker, body.decode() if status == 200 else None))
        except OSError as e:
            log.warn("metrics: worker {worker} did not answer on {path}: {error}", worker=worker, path=str(path), error=str(e))
            pages.append((worker, None))
    return pages


class NodeMetrics(resource.Resource):
    """Worker 0's /metrics with several workers: its own and the others', gathered at each scrape."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, others: list, run_in_thread) -> None:
        super().__init__()
        self.registry = registry
        self.others = others
        self.run_in_thread = run_in_thread

    def render_GET(self, request):
        own = generate_latest(self.registry).decode()
        d = self.run_in_thread(fetch_pages, self.others)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def write(pages) -> None:
            if not gone:
                request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
                request.write(merged_text([(0, own), *pages]))
                request.finish()

        def failed(failure) -> None:
            log.failure("metrics: gathering the workers' pages failed", failure)
            if not gone:
                request.setResponseCode(500)
                request.finish()

        d.addCallbacks(write, failed)
        return server.NOT_DONE_YET
