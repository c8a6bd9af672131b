"""How long a simulated pool takes to stop once it has served (every test's teardown). Prints figures."""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

RUNS = 20


def main():
    stops = []
    for _ in range(RUNS):
        sim = Simulator().start()
        connect(sim.url).xenapi.host.get_all()
        started = time.perf_counter()
        sim.stop()
        stops.append(time.perf_counter() - started)
    print("simulator stop, %d runs: median %.0f ms, max %.0f ms" % (
        RUNS, statistics.median(stops) * 1000, max(stops) * 1000))


if __name__ == "__main__":
    main()
