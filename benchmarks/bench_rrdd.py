"""xsguard-rrdd's cost on a host with 100 running VMs: CPU seconds per hour, xapi calls per reading.

The daemon runs as its unit starts it on a simulated host whose stand-in xcp-rrdd reads every
``INTERVAL`` seconds instead of 5: its CPU time (user + system, from /proc, with the lsevtchn
it runs; the simulated lsevtchn is a ``cat`` of dom0's table) and the XenAPI
calls it makes are taken over whole readings, then scaled to xcp-rrdd's 720 readings an hour.
Three phases: steady (nothing changes), starts (a VM admitted and starting at every reading),
and churn (a VM shut down at every reading, so the set of domains changes). Each line also
says how many of the phase's readings the stand-in xcp-rrdd did not take (a failed read, or a
file not written in time).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect, make_vm  # noqa: E402
from xsguard.rrdd import DaemonXapi  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

INTERVAL = 1.0
READINGS_PER_HOUR = 3600 // 5
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of one process and of the children it waited for (lsevtchn)."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def measure(sim, host, readings, step=None):
    """CPU seconds and xapi calls of the daemon over ``readings`` whole readings."""
    standin, service = sim.pool.rrdds[host], sim.pool.services[host]
    start = standin.readings
    while standin.readings == start:
        time.sleep(0.01)
    first, cpu = standin.readings, cpu_seconds(service.pid)
    taken = len(standin.outcomes.get("xsguard", []))
    calls = sum(1 for originator, _, _ in list(sim.pool.calls) if originator == DaemonXapi.originator)
    seen = first
    while standin.readings < first + readings:
        if step is not None and standin.readings != seen:
            seen = standin.readings
            step()
        time.sleep(0.01)
    cpu = cpu_seconds(service.pid) - cpu
    calls = sum(1 for originator, _, _ in list(sim.pool.calls) if originator == DaemonXapi.originator) - calls
    missed = sum(1 for o in standin.outcomes.get("xsguard", [])[taken:] if o != "ok")
    return cpu / readings, calls / readings, missed


def main(readings=20):
    with Simulator(rrdd=True, rrdd_interval=INTERVAL) as sim:
        api = connect(sim.url).xenapi
        host = api.sim.add_host("xs-a", {"vcpus": "16"})
        running = []
        for i in range(100):
            ref = make_vm(api, "running-%d" % i, vcpus=2, hvm=True, disks=2, nics=1, affinity=host)
            api.VM.start(ref, False, False)
            running.append(ref)
        ports = api.sim.get_dom0(host)["ports_used"]
        waiting = [make_vm(api, "starting-%d" % i, vcpus=2, hvm=True, disks=2, nics=1, affinity=host)
                   for i in range(readings)]
        for ref in waiting:
            api.sim.set_guest(ref, {"connect_delay": "3600"})  # admitted, its drivers never connect

        def start_one():
            api.VM.start(waiting.pop(), False, False)

        def stop_one():
            api.VM.hard_shutdown(running.pop())

        print("xsguard-rrdd, host with 100 running VMs (%s dom0 ports in use), %d readings per phase"
              % (ports, readings))
        for phase, step in (("steady", None), ("a VM starting each reading", start_one),
                            ("a VM shut down each reading", stop_one)):
            cpu, calls, missed = measure(sim, host, readings, step)
            print("%-28s CPU %5.1f ms per reading = %5.1f s per hour; xapi calls per reading %.2f;"
                  " readings xcp-rrdd did not take %d"
                  % (phase + ":", cpu * 1000, cpu * READINGS_PER_HOUR, calls, missed))


if __name__ == "__main__":
    main()
