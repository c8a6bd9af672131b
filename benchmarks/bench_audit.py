"""``xsguard audit`` on a host with 100 running VMs: whole-process time and XenAPI calls. Prints figures."""

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect, make_vm, wait_for  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402


def main(samples=10, vms=100):
    with Simulator() as sim:
        api = connect(sim.url).xenapi
        host = api.sim.add_host("xs-a", {"vcpus": "16"})
        for i in range(vms):
            ref = make_vm(api, "running-%d" % i, vcpus=1 + i % 4, hvm=i % 2 == 0, disks=1 + i % 3, nics=1,
                          affinity=host)
            api.VM.start(ref, False, False)
        wait_for(lambda: len(api.sim.get_dom0(host)["by_remote_domain"]) == vms)
        conf = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
        cmd = [sys.executable, "-m", "xsguard", "--config", conf, "audit", "--json"]
        times = []
        calls_before = len(api.sim.get_calls())
        for _ in range(samples):
            started = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - started)
        calls = [m for o, m in api.sim.get_calls()[calls_before:] if o == "xsguard"]
        per_run = len(calls) / samples
        print("xsguard audit --json, whole process, host with %d VMs (%s ports), median of %d: %.0f ms"
              % (vms, api.sim.get_dom0(host)["ports_used"], samples, statistics.median(times) * 1000))
        print("XenAPI calls per audit: %.0f (%s)" % (per_run, ", ".join(sorted(set(calls)))))


if __name__ == "__main__":
    main()
