"""
Attack: anyone who reaches the health port asks /health/ready in a loop.
Each answer used to write and fsync a file in the queue directory, so an
unauthenticated client could make the queue's disk sync as fast as it
could send requests. The check is now cached for a second, and requests
while one runs share it.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from gateway.admin.health import NodeState, Readiness


def test_a_flood_of_probes_costs_one_queue_check_a_second(tmp_path):
    clock = Clock()
    calls = []

    def run_in_thread(f, *args):
        calls.append(Deferred())
        return calls[-1]

    readiness = Readiness(NodeState(tmp_path / "draining"), tmp_path, 0, None, run_in_thread, clock)
    answers = []
    for _ in range(500):
        readiness.check().addCallback(answers.append)
    assert len(calls) == 1 and answers == []  # all 500 wait for the one check in flight
    calls[0].callback((True, "900 MB free"))
    assert len(answers) == 500 and {a[0] for a in answers} == {200}
    clock.advance(0.5)
    for _ in range(500):
        readiness.check().addCallback(answers.append)
    assert len(calls) == 1 and len(answers) == 1000
    clock.advance(0.5)
    readiness.check().addCallback(answers.append)
    assert len(calls) == 2
    calls[1].callback((False, "/q is not writable: No space left on device"))
    assert answers[-1][0] == 503 and answers[-1][1]["failing"] == ["queue"]


def test_a_real_check_still_happens_after_the_second(tmp_path):
    """The cache never hides a disk that went bad for more than a second."""
    from twisted.internet.defer import succeed

    clock = Clock()
    count = []

    def run_in_thread(f, *args):
        count.append(1)
        return succeed(f(*args))

    readiness = Readiness(NodeState(tmp_path / "draining"), tmp_path / "q", 0, None, run_in_thread, clock)
    (tmp_path / "q").mkdir()
    assert readiness.check().result[0] == 200
    (tmp_path / "q").rmdir()
    assert readiness.check().result[0] == 200 and len(count) == 1
    clock.advance(1.0)
    assert readiness.check().result[0] == 503 and len(count) == 2
