"""A point in time a whole decision must finish by; every wait takes its share of it."""

import contextlib
import signal
import time

from .errors import DeadlineExceeded

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Iterator

BACKSTOP_GRACE = 0.25  # seconds past the deadline before the alarm interrupts whatever runs
PLUGIN_FLOOR = 10.0  # seconds a host plugin call allows itself at least, unless its caller says less


class Deadline:
    """Seconds left until a monotonic instant."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def cap(self, seconds: float) -> float:
        """``seconds``, or less if the deadline comes first; raises once it has passed."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded("the %.1fs deadline passed" % self.seconds, self.seconds)
        return min(seconds, left)


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (time.monotonic()), as the decision log records durations."""
    return round((time.monotonic() - started) * 1000, 1)


def _alarm(signum: int, frame: "Any") -> None:
    raise DeadlineExceeded("xsguard ran past its deadline")


@contextlib.contextmanager
def backstop(deadline: Deadline) -> "Iterator[None]":
    """Interrupt the block with DeadlineExceeded shortly after ``deadline``, whatever it waits on.

    SIGALRM, so only in the main thread of a process of xsguard's own (the plugin, the command).
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(deadline.remaining(), 0.001) + BACKSTOP_GRACE)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
