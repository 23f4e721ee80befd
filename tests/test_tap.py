"""
service.build_service (what tap.makeService returns), as a unit: which services a role gets and in what order.

twistd stops a MultiService's children in reverse order, so the order they
are added is the stop order backwards: the SMTP listeners must come after
the queue (a stop closes intake before the queue it writes to), and the
admin and health ports listen through ListeningService (a port already taken
stops start-up). Building binds nothing: ports open at privilegedStartService.
"""

import pytest
from twisted.internet import reactor

from gateway import testing
from gateway.listenservice import ListeningService
from gateway.nodeservices import QueueService
from gateway.serialthread import SerialThread
from gateway.service import build_service
from gateway.workers import Listener


def build(tmp_path, role: str):
    cfg = testing.config(
        server={"name": "EXSERVER", "fqdn": "mail.corp.example", "var_dir": str(tmp_path / "var")},
        health={"listen": "127.0.0.1:8081"},
    )
    return list(build_service(cfg, role, reactor))


def kinds(services) -> list[str]:
    return [type(s).__name__ for s in services]


def test_every_role_listens_after_its_queue_so_a_stop_closes_intake_first(tmp_path):
    """role all: the queue's thread and QueueService come before both SMTP listeners (hub 2525, frontend 2025)."""
    services = build(tmp_path, "all")
    listeners = [s for s in services if isinstance(s, Listener)]
    assert sorted(str(s.binding) for s in listeners) == ["127.0.0.1:2025", "127.0.0.1:2525"]
    first_listener = min(services.index(s) for s in listeners)
    assert services.index(next(s for s in services if isinstance(s, QueueService))) < first_listener
    assert services.index(next(s for s in services if isinstance(s, SerialThread))) < first_listener


@pytest.mark.parametrize("role, bindings, queue", [("frontend", ["127.0.0.1:2025"], False), ("hub", ["127.0.0.1:2525"], True)])
def test_each_role_gets_its_own_listeners_and_only_the_hub_a_queue(tmp_path, role, bindings, queue):
    """--role frontend: its connector's binding and no queue; --role hub: the hub binding and the queue."""
    services = build(tmp_path, role)
    assert [str(s.binding) for s in services if isinstance(s, Listener)] == bindings
    assert any(isinstance(s, QueueService) for s in services) is queue


def test_the_admin_and_health_ports_stop_start_up_when_they_cannot_listen(tmp_path):
    """Both are ListeningService (a listen failure raises at start), and nothing is bound by building."""
    services = build(tmp_path, "all")
    ports = [s for s in services if isinstance(s, ListeningService)]
    assert len(ports) == 2
    assert [s.name for s in ports if s.name] == ["health 127.0.0.1:8081"]
    assert all(s.port is None for s in ports)
