"""SerialThread: calls run in order in one thread of their own; results come back in the reactor thread."""

import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from gateway.serialthread import SerialThread


@pytest.fixture
def worker():
    thread = SerialThread(reactor, "test-serial")
    thread.startService()
    yield thread
    running = thread._thread
    if thread.running:
        thread.stopService()
    if running is not None:
        # Ended before the next test starts one of the same name.
        running.join(5)


@pytest_twisted.ensureDeferred
async def test_calls_run_in_order_in_one_other_thread_and_answer_in_the_reactor_thread(worker):
    ran = []

    def record(n):
        ran.append((n, threading.current_thread().name))
        return n * 10

    answered_in = []
    results = [worker.call(record, n).addCallback(lambda r: answered_in.append(threading.current_thread()) or r) for n in range(5)]
    assert [await d for d in results] == [0, 10, 20, 30, 40]
    assert ran == [(n, "test-serial") for n in range(5)]
    assert answered_in == [threading.main_thread()] * 5


@pytest_twisted.ensureDeferred
async def test_an_error_comes_back_as_a_failure_and_the_thread_goes_on(worker):
    def broken():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await worker.call(broken)
    assert await worker.call(lambda: "still here") == "still here"


@pytest_twisted.ensureDeferred
async def test_stop_finishes_the_calls_already_given(worker):
    gate = threading.Event()
    done = []
    first = worker.call(gate.wait, 10)
    second = worker.call(done.append, "second")
    thread = worker._thread
    assert thread.name == "test-serial" and thread.is_alive()
    stopped = worker.stopService()
    assert not stopped.called
    gate.set()
    await stopped
    assert first.called and second.called and done == ["second"]
    thread.join(5)
    assert not thread.is_alive()


@pytest_twisted.ensureDeferred
async def test_a_call_after_stop_runs_at_once_in_the_callers_thread(worker):
    await worker.stopService()
    d = worker.call(lambda: threading.current_thread())
    assert d.called and await d is threading.main_thread()


@pytest_twisted.ensureDeferred
async def test_a_post_runs_in_order_in_the_thread_and_wakes_nothing_on_success():
    class CountingReactor:
        """The reactor, counting what the thread hands back to it."""

        def __init__(self):
            self.handed_back = []

        def callFromThread(self, f, *args):
            self.handed_back.append(f)
            reactor.callFromThread(f, *args)

    counting = CountingReactor()
    worker = SerialThread(counting, "test-post")
    worker.startService()
    ran = []
    try:
        worker.post(lambda: ran.append(threading.current_thread().name))
        assert await worker.call(lambda: "after") == "after"
    finally:
        await worker.stopService()
    assert ran == ["test-post"]
    # Only the call's answer (and the stop) came back to the reactor thread; the post sent nothing.
    assert len(counting.handed_back) == 2


@pytest_twisted.ensureDeferred
async def test_a_failed_post_is_logged_in_the_reactor_thread_and_the_thread_goes_on(worker):
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        def broken():
            raise OSError(5, "Input/output error")

        worker.post(broken)
        assert await worker.call(lambda: "still here") == "still here"
    finally:
        globalLogPublisher.removeObserver(events.append)
    (failed,) = [e for e in events if e.get("log_namespace") == "exgateway.thread"]
    assert failed["call"].endswith("broken") and "Input/output error" in str(failed["log_failure"].value)


@pytest_twisted.ensureDeferred
async def test_a_post_after_stop_runs_at_once_in_the_callers_thread(worker):
    await worker.stopService()
    ran = []
    worker.post(lambda: ran.append(threading.current_thread()))
    assert ran == [threading.main_thread()]
