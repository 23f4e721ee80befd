"""The metrics page of a node with several workers: one page, every sample labelled with its worker."""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import succeed
from twisted.web.test.requesthelper import DummyRequest

from gateway.admin.metrics import Metrics, NodeMetrics, merged_text


def _worker_page(accepted: int) -> str:
    m = Metrics()
    for _ in range(accepted):
        m.accepted.labels("Default Frontend").inc()
    return generate_latest(m.registry).decode()


def samples(text: bytes, name: str) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples
            if s.name == name}


def test_the_workers_pages_become_one_with_a_worker_label():
    page = merged_text([(0, _worker_page(3)), (1, _worker_page(2)), (2, None)])
    assert samples(page, "exgateway_messages_accepted_total") == {
        (("connector", "Default Frontend"), ("worker", "0")): 3.0,
        (("connector", "Default Frontend"), ("worker", "1")): 2.0,
    }
    assert samples(page, "exgateway_worker_up") == {(("worker", "0"),): 1.0, (("worker", "1"),): 1.0, (("worker", "2"),): 0.0}
    text = page.decode()
    assert text.count("# TYPE exgateway_messages_accepted_total counter") == 1


def test_worker_0_gathers_the_others_at_each_scrape():
    m = Metrics()
    m.accepted.labels("Default Frontend").inc()
    asked = []

    def run_in_thread(f, others):
        asked.append(others)
        return succeed([(1, _worker_page(4))])

    request = DummyRequest([b""])
    NodeMetrics(m.registry, [(1, "admin-worker-1.sock")], run_in_thread).render_GET(request)
    assert asked == [[(1, "admin-worker-1.sock")]] and request.finished
    page = b"".join(request.written)
    assert samples(page, "exgateway_messages_accepted_total") == {
        (("connector", "Default Frontend"), ("worker", "0")): 1.0,
        (("connector", "Default Frontend"), ("worker", "1")): 4.0,
    }


def test_each_certificate_of_a_pair_has_its_expiry(tmp_path):
    """The default store file holds an RSA and an ECDSA certificate, both served: both are watched."""
    import datetime
    from types import SimpleNamespace

    from gateway.admin.metrics import _Live
    from gateway.tls.store import CertificateStore

    store = CertificateStore(tmp_path)
    made = store.ensure_default("mail.corp.example", datetime.datetime.now(datetime.UTC))
    (family,) = _Live(None, None, SimpleNamespace(store=store), "node").collect()
    assert {s.labels["thumbprint"] for s in family.samples} == {made.thumbprint, made.companions[0].thumbprint}
