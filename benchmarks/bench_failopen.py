"""Storms on slow storage and against a slow xapi: what each on_error policy lets through. Prints figures.

40 VMs start at once on a host with room for 20 by the model (drivers connecting 1-10 s
later, 4 hooks at a time), once with every fsync of the hook taking 1 s (strace injects the
delay) and once with xapi answering every call in 1 s; each under on_error = allow and deny.
For each: the starts that went through and those that did not (refused by the hook, or failed
by a dom0 out of ports), the starts let through unchecked (exit 1) and how many of those the
ledger charged, and the devices that failed for lack of ports once every driver had connected.
"""

import os
import pathlib
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect  # noqa: E402
from tests.test_failopen import ledger_uuids, slow_fsync_python, unchecked_uuids  # noqa: E402
from tests.test_storm import desktops, host_with_room, start_all  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

VMS, ROOM = 40, 20


def storm(slow: str, on_error: str) -> str:
    interpreter = None
    if slow == "fsync":
        interpreter = slow_fsync_python(pathlib.Path(tempfile.mkdtemp(prefix="xsguard-bench-")), None)
    with Simulator(interpreter=interpreter) as sim:
        api = connect(sim.url).xenapi
        host = host_with_room(api, "xs-a", ROOM, config={"policy.on_error": on_error})
        refs = desktops(api, VMS, "desk", random.Random(11), affinity=host)
        if slow == "xapi":
            api.sim.set_call_delay(1.0)
        started = time.perf_counter()
        outcomes = start_all(sim.url, refs)
        wall = time.perf_counter() - started
        api.sim.set_call_delay(0)
        time.sleep(11)  # every driver connects within 10 s of its start
        admitted = sum(1 for o in outcomes.values() if o == "ok")
        unchecked = unchecked_uuids(api)
        charged = len(unchecked & ledger_uuids(api, host))
        return ("1 s %-5s on_error = %-5s  started %2d  not started %2d  unchecked %2d (charged %2d)  "
                "device failures %2d  wall %.0f s"
                % (slow, on_error, admitted, VMS - admitted, len(unchecked), charged,
                   len(api.sim.get_failures()), wall))


def main():
    print("%d VMs at once, room for %d, 4 hooks at a time, deadline 5 s:" % (VMS, ROOM))
    for slow in ("fsync", "xapi"):
        for on_error in ("allow", "deny"):
            print(storm(slow, on_error), flush=True)


if __name__ == "__main__":
    main()
