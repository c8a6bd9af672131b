"""A boot storm on one simulated host: admitted, refused, over-admitted, hook times, how long each
decision held the ledger's lock, and decisions per second. Prints figures.

200 VMs start at once on a host whose dom0 has room for exactly 150 of them by the model;
their PV drivers connect 1-10 s after the start; the simulated xenopsd runs 4 hooks at a time.
The ledger lives on a tmpfs, as dom0's ``/run/xsguard`` does (``/dev/shm`` here, when there is
one): on a disk file system, replacing the ledger by rename may start writing it back to the
disk under the lock (ext4's ``auto_da_alloc``), which dom0 never pays.
"""

import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect, decision_log  # noqa: E402
from tests.test_storm import desktops, host_with_room, settle_ports, start_all  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

TMPFS = "/dev/shm"


def main():
    state = tempfile.mkdtemp(prefix="xsguard-bench-storm-", dir=TMPFS if os.path.isdir(TMPFS) else None)
    try:
        storm(os.path.join(state, "ledger.json"))
    finally:
        shutil.rmtree(state, ignore_errors=True)


def storm(ledger: str) -> None:
    with Simulator() as sim:
        api = connect(sim.url).xenapi
        host = host_with_room(api, "xs-a", 150, config={"ledger.path": ledger})
        refs = desktops(api, 200, "desk", random.Random(7), affinity=host)
        started = time.perf_counter()
        outcomes = start_all(sim.url, refs)
        wall = time.perf_counter() - started
        settle_ports(api, host)
        hooks = sorted(float(e["elapsed_ms"]) for e in api.sim.get_hook_log())
        admitted = sum(1 for o in outcomes.values() if o == "ok")
        print("200 VMs at once, room for 150: admitted %d, refused %d, device failures for lack of ports %d"
              % (admitted, len(outcomes) - admitted, len(api.sim.get_failures())))
        print("storm wall time %.1f s; hook time p50 %.0f ms, p99 %.0f ms, max %.0f ms (4 at a time, 2 cores)"
              % (wall, statistics.median(hooks), hooks[int(len(hooks) * 0.99) - 1], hooks[-1]))
        held = sorted(r["lock_held_ms"] for r in decision_log(api, host, len(outcomes)) if "lock_held_ms" in r)
        print("ledger lock held per decision: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d decisions (target <= 20 ms;"
              " ledger in %s)" % (statistics.median(held), held[int(len(held) * 0.99) - 1], held[-1], len(held),
                                  os.path.dirname(os.path.dirname(ledger))))
        print("decisions per second: %.1f" % (len(outcomes) / wall))
        dom0 = api.sim.get_dom0(host)
        print("dom0 ports once every driver connected: %s of %s (margin 16)" % (dom0["ports_used"], dom0["port_limit"]))


if __name__ == "__main__":
    main()
