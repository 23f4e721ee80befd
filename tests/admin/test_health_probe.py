"""The frontend's hub check against a hub that accepts TCP and never answers (SIGSTOP): answered within its probe timeout."""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from gateway.admin.health import NodeState, Readiness


class FrozenPool:
    """acquire() never fires until the test says (a frozen hub); counts probes."""

    def __init__(self):
        self.pending = []
        self.released = []

    def acquire(self, reuse=True):
        d = Deferred()
        self.pending.append(d)
        return d

    def release(self, client):
        self.released.append(client)


def answer(d):
    out = []
    d.addBoth(out.append)
    return out


def test_a_frozen_hub_gets_a_503_within_the_probe_timeout_and_one_probe_at_a_time(tmp_path):
    clock, pool = Clock(), FrozenPool()
    r = Readiness(NodeState(tmp_path / "draining"), None, 0, pool, None, clock, cache=2.0, probe_timeout=2.5)
    first = answer(r.check())
    clock.advance(1)
    second = answer(r.check())  # while the first probe runs: shares it, no second connection
    assert len(pool.pending) == 1 and first == [] and second == []
    clock.advance(1.5)
    assert first[0][0] == 503
    assert first[0][1]["checks"]["hub_reachable"]["detail"] == "no hub answered within 2.5 s"
    clock.advance(1)
    assert second[0][0] == 503
    # Cached: the next check answers at once.
    assert answer(r.check())[0][0] == 503 and len(pool.pending) == 1
    # The hub resumes; its late answer is kept for the next check, and the connection goes back.
    pool.pending[0].callback(("client", False))
    assert pool.released == ["client"]
    assert answer(r.check())[0][0] == 200 and len(pool.pending) == 1
    # Frozen again: past the cache, a new probe, and again an answer within the timeout.
    clock.advance(2)
    third = answer(r.check())
    assert len(pool.pending) == 2 and third == []
    clock.advance(2.5)
    assert third[0][0] == 503


def test_a_late_success_is_the_next_answer(tmp_path):
    clock, pool = Clock(), FrozenPool()
    r = Readiness(NodeState(tmp_path / "draining"), None, 0, pool, None, clock, cache=2.0, probe_timeout=2.5)
    assert answer(r.check()) == [] and len(pool.pending) == 1
    clock.advance(2.5)
    clock.advance(0.5)
    pool.pending[0].callback(("client", False))
    (code, body), = answer(r.check())
    assert code == 200 and body["checks"]["hub_reachable"]["detail"] == "a hub answered EHLO"
    assert len(pool.pending) == 1 and clock.getDelayedCalls() == []
