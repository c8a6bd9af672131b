"""kern.log lines as dom0's rsyslog writes them, for the kernel-log tests and benchmark."""

import time
from typing import List

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def stamped(at: float, message: str) -> str:
    """A kern.log line as rsyslog writes it: local time without a year, host, ``kernel:``."""
    t = time.localtime(at)
    return "%s %2d %02d:%02d:%02d xs-a kernel: %s\n" % (MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min,
                                                      t.tm_sec, message)


def boot_lines(booted: float, nr_irqs: str, abi: str) -> List[str]:
    """The lines a boot leaves in kern.log when rsyslog starts, 20 s in: its ``Linux version``,
    then ``nr_irqs`` and ``abi`` (the messages after the kernel's timestamp)."""
    return [stamped(booted + 20, "[    0.000000] Linux version 4.19.0+1 (mockbuild@koji) #1 SMP"),
            stamped(booted + 20, "[    2.742894] " + nr_irqs),
            stamped(booted + 20, "[    2.750855] " + abi)]
