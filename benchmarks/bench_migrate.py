"""A migration storm: 24 VMs from 4 sources migrated at once onto a host with room for 8. Prints figures.

Each source runs its vm-pre-migrate hook as xenopsd does (4 workers per host); the
destination's xsguard decides each through its plugin (``admit``). For each run: the
migrations that moved, those refused (exit 2), those let through unchecked because the
destination did not answer within the source's time (exit 1), the longest source hook, and the
destination's devices that failed for lack of ports (error 28). Run on a loaded machine, the
unchecked ones are the ones only the destination's charging of arriving VMs keeps safe.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import XenAPI  # noqa: E402

from tests.pool import connect  # noqa: E402
from tests.test_migrate import host_with_free, running  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

SOURCES, PER_SOURCE, ROOM = 4, 6, 8
RUNS = 3


def storm() -> str:
    with Simulator() as sim:
        api = connect(sim.url).xenapi
        sources = [host_with_free(api, "xs-s%d" % s, 100) for s in range(SOURCES)]
        target = host_with_free(api, "xs-dest", 10 * ROOM)
        vms = [running(api, "vm-%d-%d" % (s, i), host) for s, host in enumerate(sources) for i in range(PER_SOURCE)]
        barrier = threading.Barrier(len(vms))
        errors = {}

        def migrate(ref: str) -> None:
            session = connect(sim.url)
            barrier.wait()
            try:
                session.xenapi.VM.pool_migrate(ref, target, {})
            except XenAPI.Failure as exc:
                errors[ref] = exc.details
            finally:
                session.xenapi.session.logout()

        started = time.monotonic()
        threads = [threading.Thread(target=migrate, args=(ref,)) for ref in vms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        runs = [r for r in api.sim.get_hook_log() if r["hook"] == "vm-pre-migrate/50xsguard"]
        moved = sum(1 for ref in vms if api.VM.get_resident_on(ref) == target)
        return ("moved %2d, refused %2d, unchecked %d, device failures %d; longest source hook %4.0f ms; %.1f s"
                % (moved, sum(1 for r in runs if r["exit_code"] == "2"), sum(1 for r in runs if r["exit_code"] == "1"),
                   len(api.sim.get_failures()), max(r["elapsed_ms"] for r in runs), elapsed))


def main() -> None:
    print("%d migrations from %d sources at once onto room for %d (default deadline 5 s):"
          % (SOURCES * PER_SOURCE, SOURCES, ROOM))
    for run in range(RUNS):
        print("  run %d: %s" % (run + 1, storm()))


if __name__ == "__main__":
    main()
