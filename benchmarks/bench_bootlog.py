"""The search for this boot's kernel lines over kern.log and its rotations. Prints figures."""

import gzip
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xsguard import bootlog  # noqa: E402
from xsguard.model.ceilings import LINUX_IRQS, XEN_PORTS  # noqa: E402

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
MIB_PER_LOG = 50


def stamped(at, message):
    t = time.localtime(at)
    return "%s %2d %02d:%02d:%02d xs-a kernel: %s\n" % (MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min,
                                                      t.tm_sec, message)


def boot(at, nr_irqs, abi):
    return (stamped(at + 20, "[    0.000000] Linux version 4.19.0+1 (mockbuild@koji) #1 SMP")
            + stamped(at + 20, "[    2.742894] NR_IRQS: %d, nr_irqs: 2048, preallocated irqs: 16" % nr_irqs)
            + stamped(at + 20, "[    2.750855] xen:events: Using %s ABI" % abi))


def chatter(since, until):
    """MIB_PER_LOG MiB of ordinary kernel lines stamped evenly from ``since`` to ``until``."""
    line = "[%6d.000000] vif%d.0: tx queue 0 stalled, resetting the ring of the guest's backend\n"
    count = MIB_PER_LOG * 1024 * 1024 // (len(stamped(since, line % (0, 0))))
    step = (until - since) / count
    return "".join(stamped(since + i * step, line % (i, i % 100)) for i in range(count))


def write(path, text, written_at):
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as handle:
        handle.write(text.encode())
    os.utime(path, (written_at, written_at))


def main():
    now = int(time.time())
    booted = now - 30 * 86400
    earlier = booted - 90 * 86400
    with tempfile.TemporaryDirectory() as tmp:
        log, ring, stat = (os.path.join(tmp, n) for n in ("kern.log", "kmsg", "stat"))
        with open(stat, "w") as handle:
            handle.write("btime %d\n" % booted)
        open(ring, "w").close()
        write(log + ".2.gz", chatter(earlier, booted - 60) + boot(booted, 33024, "2-level")
              + chatter(booted, booted + 10 * 86400), booted + 10 * 86400)
        write(log + ".1", chatter(booted + 10 * 86400, booted + 20 * 86400), booted + 20 * 86400)
        write(log, chatter(booted + 20 * 86400, now), now)
        t = time.perf_counter()
        found = bootlog.search(log, ring, stat, [XEN_PORTS, LINUX_IRQS])
        print("boot lines over kern.log, .1 and .2.gz (%d MiB each), found in kern.log.2.gz after an earlier"
              " boot's lines: %s, %.0f ms" % (MIB_PER_LOG, sorted(found), (time.perf_counter() - t) * 1000))
        write(log + ".2.gz", chatter(earlier, booted - 60) + chatter(booted, booted + 10 * 86400), booted + 10 * 86400)
        t = time.perf_counter()
        found = bootlog.search(log, ring, stat, [XEN_PORTS, LINUX_IRQS])
        print("boot lines over kern.log, .1 and .2.gz (%d MiB each), in none: %s, %.0f ms (once a boot: a search"
              " in vain is kept)" % (MIB_PER_LOG, sorted(found), (time.perf_counter() - t) * 1000))


if __name__ == "__main__":
    main()
