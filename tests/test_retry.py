"""The retry policy: transport errors are retried within the deadline, xapi's answers never."""

import pytest
import XenAPI

from xsguard.deadline import Deadline
from xsguard.retry import call_with_retries


class Flaky:
    def __init__(self, failures, error):
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


def test_transport_errors_are_retried():
    """A refused connection (xapi restarting) twice, then an answer: the answer is returned."""
    fn = Flaky(2, ConnectionRefusedError(111, "Connection refused"))
    assert call_with_retries(Deadline(10), fn, "ok") == "ok"
    assert fn.calls == 3


def test_a_xenapi_failure_is_not_retried():
    """xapi's own error is an answer: raised after one call."""
    fn = Flaky(5, XenAPI.Failure(["HANDLE_INVALID", "VM", "OpaqueRef:x"]))
    with pytest.raises(XenAPI.Failure):
        call_with_retries(Deadline(10), fn, "ok")
    assert fn.calls == 1


def test_retries_stop_at_the_deadline():
    """A socket that keeps failing is given up on once the deadline is near, not after it."""
    fn = Flaky(1000, ConnectionResetError(104, "reset"))
    deadline = Deadline(0.5)
    with pytest.raises(ConnectionResetError):
        call_with_retries(deadline, fn, "ok")
    assert 1 < fn.calls <= 4
    assert deadline.remaining() > -0.5
