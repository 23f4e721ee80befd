"""
Prometheus metrics at /metrics on the health listener (prometheus-client).

Counters and histograms are updated where things happen (sessions, replies,
AUTH, delivery attempts); queue depth, next-hop health and certificate
expiry are read from the live objects when Prometheus scrapes, so they are
never stale and cost nothing between scrapes. Each gateway process has its
own registry, not the library's global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.twisted import MetricsResource

from gateway.queue import view


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

    def watch(self, scheduler=None, health=None, tls=None, server_name: str = "") -> None:
        """Read queue depth, address health and certificate expiry at each scrape."""
        self.registry.register(_Live(scheduler, health, tls, server_name))

    def resource(self) -> MetricsResource:
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
            for cert in self.tls.store.certificates:
                expiry.add_metric([cert.thumbprint, cert.subject], cert.not_after.timestamp())
            yield expiry
