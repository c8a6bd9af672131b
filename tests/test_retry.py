"""The retry policy: transport errors are retried within the deadline, xapi's answers never."""

import pytest
import tenacity.nap
import XenAPI

import xsguard.deadline
from xsguard.deadline import Deadline
from xsguard.retry import call_with_retries


class Clock:
    """A monotonic clock that only moves when slept on (tenacity's own tests mock its sleep)."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(xsguard.deadline, "time", fake)
    monkeypatch.setattr(tenacity.nap, "time", fake)
    return fake


class Flaky:
    def __init__(self, failures, error, clock=None, cost=0.0):
        self.failures = failures
        self.error = error
        self.calls = 0
        self.clock = clock
        self.cost = cost  # seconds each call takes on the clock

    def __call__(self, value):
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.cost
        if self.calls <= self.failures:
            raise self.error
        return value


def test_transport_errors_are_retried(clock):
    """A refused connection (xapi restarting) twice, then an answer: the answer is returned after 0.1 s."""
    fn = Flaky(2, ConnectionRefusedError(111, "Connection refused"))
    assert call_with_retries(Deadline(10), fn, "ok") == "ok"
    assert fn.calls == 3
    assert clock.slept == [0.1]  # the bare first call, then tenacity's first try at once, then one wait


def test_a_xenapi_failure_is_not_retried(clock):
    """xapi's own error is an answer: raised after one call, without a wait."""
    fn = Flaky(5, XenAPI.Failure(["HANDLE_INVALID", "VM", "OpaqueRef:x"]))
    with pytest.raises(XenAPI.Failure):
        call_with_retries(Deadline(10), fn, "ok")
    assert fn.calls == 1 and clock.slept == []


def test_retries_stop_at_the_deadline(clock):
    """A socket that keeps failing within a 0.5 s deadline: four calls, backing off 0.1 then 0.2 s,
    given up on before the deadline, not after it."""
    fn = Flaky(1000, ConnectionResetError(104, "reset"), clock, cost=0.01)
    deadline = Deadline(0.5)
    with pytest.raises(ConnectionResetError):
        call_with_retries(deadline, fn, "ok")
    assert fn.calls == 4
    assert clock.slept == [0.1, 0.2]
    assert deadline.remaining() >= 0


def test_a_wait_never_runs_past_the_deadline(clock):
    """With 0.25 s, the second back-off (0.2 s) is cut to leave the last call 0.1 s: done by 0.15 s."""
    fn = Flaky(1000, ConnectionResetError(104, "reset"))
    deadline = Deadline(0.25)
    with pytest.raises(ConnectionResetError):
        call_with_retries(deadline, fn, "ok")
    assert fn.calls == 4
    assert clock.slept == [pytest.approx(0.1), pytest.approx(0.05)]
    assert deadline.remaining() == pytest.approx(0.1)
