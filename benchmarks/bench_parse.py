"""Parsing a full FIFO port table, and ``xsguard status`` as a whole process. Prints figures."""

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect  # noqa: E402
from xsguard.model import interrupts, lsevtchn  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    text = "".join("%4d: VCPU %d: Interdomain (Connected) - Remote Domain %d, Port %d\n"
                   % (p, p % 16, 1 + p // 12, 1 + p % 12) for p in range(1, 131072))
    t = timed(lambda: lsevtchn.parse(text), 5)
    print("parse lsevtchn, 131071 ports (%d KiB): median %.1f ms" % (len(text) // 1024, t * 1000))
    header = "".join("%11s" % ("CPU%d" % i) for i in range(16))
    zeros = "".join("%11d" % 0 for _ in range(16))
    irq_text = "    %s\n" % header + "".join("%5d:%s  xen-dyn-lateeoi  -event  vif%d.0-q%d-tx\n"
                                             % (i, zeros, i // 8, i % 8) for i in range(41000))
    t = timed(lambda: interrupts.parse(irq_text), 5)
    print("parse /proc/interrupts, 41000 IRQs x 16 CPUs: median %.1f ms" % (t * 1000))

    with Simulator() as sim:
        api = connect(sim.url).xenapi
        host = api.sim.add_host("xs-a", {"vcpus": "16"})
        conf = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
        cmd = [sys.executable, "-m", "xsguard", "--config", conf, "status", "--json"]
        t = timed(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True), 10)
        print("xsguard status --json, whole process, idle host: median %.0f ms" % (t * 1000))


if __name__ == "__main__":
    main()
