"""A point in time a whole decision must finish by; every wait takes its share of it."""

import time

from .errors import DeadlineExceeded


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
