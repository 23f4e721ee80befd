"""Readiness as named checks, the queue probe, drain state, and the hub check's cache on task.Clock."""

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from gateway.admin.health import NodeState, Readiness, evaluate, queue_check


def result(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_evaluate_names_each_failing_check():
    assert evaluate({"queue": (True, "900 MB free"), "not_draining": (True, "in service")})[0] == 200
    code, body = evaluate({"queue": (False, "/q is not writable: Permission denied"), "not_draining": (False, "draining")})
    assert code == 503 and body["failing"] == ["not_draining", "queue"]
    assert body["checks"]["queue"] == {"ok": False, "detail": "/q is not writable: Permission denied"}


def test_queue_check_writes_syncs_and_measures_free_space(tmp_path):
    ok, detail = queue_check(tmp_path, 1)
    assert ok and detail.endswith("MB free") and list(tmp_path.iterdir()) == []
    ok, detail = queue_check(tmp_path, 10**18)
    assert not ok and "MB free in" in detail and "below" in detail
    ok, detail = queue_check(tmp_path / "missing", 1)
    assert not ok and detail.endswith("is not writable: No such file or directory")


def test_drain_state_is_a_file(tmp_path):
    state = NodeState(tmp_path / "var" / "draining")
    assert not state.draining
    state.drain()
    assert NodeState(tmp_path / "var" / "draining").draining
    state.undrain()
    assert not state.draining


class Pool:
    def __init__(self):
        self.up, self.calls, self.released = True, 0, []

    def acquire(self, reuse=True):
        self.calls += 1
        return succeed(("client", False)) if self.up else fail(ConnectionRefusedError("refused"))

    def release(self, client):
        self.released.append(client)


def test_a_frontend_is_ready_only_while_a_hub_answers_and_not_draining(tmp_path):
    clock, pool, state = Clock(), Pool(), NodeState(tmp_path / "draining")
    r = Readiness(state, None, 0, pool, None, clock, cache=2.0)
    assert result(r.check())[0] == 200 and pool.released == ["client"]
    pool.up = False
    assert result(r.check())[0] == 200 and pool.calls == 1  # cached for 2 s
    clock.advance(2)
    code, body = result(r.check())
    assert code == 503 and body["failing"] == ["hub_reachable"] and body["checks"]["hub_reachable"]["detail"] == "no hub answers: refused"
    state.drain()
    assert result(r.check())[1]["failing"] == ["hub_reachable", "not_draining"]
