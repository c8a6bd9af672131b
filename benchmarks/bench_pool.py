"""xsguard pool and evacuate on 16 hosts x 1000 VMs, and the pre-migrate hook next to the
pre-start hook on the same host: whole-process times. Prints figures.

The commands run as on an operator's workstation (no dom0, xapi over HTTP); each host's
figures come from its own xsguard (host plugin), asked in parallel. The hooks run as
xenopsd runs them (PATH-only environment); the pre-migrate hook asks the destination's
xsguard to admit the VM, the pre-start hook decides on its own host.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect  # noqa: E402
from xsguard.sim.processes import environment  # noqa: E402
from xsguard.sim.scenario import build  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

HOSTS = 16
VMS_PER_HOST = 1000
RUNNING_PER_HOST = 10
SAMPLES = 5
HOOK_SAMPLES = 20


def timed(cmd, env=None):
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1, 3):
        raise SystemExit("%s exited %d: %s" % (cmd, proc.returncode, proc.stderr.decode()[-500:]))
    return elapsed


STARTERS = threading.BoundedSemaphore(4)  # starts at once across the pool: more would only queue for the CPUs


def start_some(url, host, vms):
    api = connect(url).xenapi
    for ref in vms:
        with STARTERS:
            api.VM.start_on(ref, host, False, False)


def main():
    doc = {
        "hosts": [{"name": "xs-%02d" % h, "dom0": {"vcpus": 16}} for h in range(HOSTS)],
        "vms": [{"name": "vm-h%02d" % h, "count": VMS_PER_HOST, "vcpus": 2, "hvm": True, "disks": 1, "nics": 1,
                 "affinity": "xs-%02d" % h} for h in range(HOSTS)],
    }
    with Simulator() as sim:
        built = build(sim.pool, doc)
        api = connect(sim.url).xenapi
        hosts = built["hosts"]
        by_host = [built["vms"][h * VMS_PER_HOST:h * VMS_PER_HOST + RUNNING_PER_HOST] for h in range(HOSTS)]
        threads = [threading.Thread(target=start_some, args=(sim.url, hosts[h], by_host[h])) for h in range(HOSTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print("pool: %d hosts x %d VMs, %d running on each" % (HOSTS, VMS_PER_HOST, RUNNING_PER_HOST))

        workdir = tempfile.mkdtemp(prefix="xsguard-bench-")
        conf = os.path.join(workdir, "xsguard.conf")
        with open(conf, "w") as handle:
            handle.write("[dom0]\ninventory = %s\n\n[log]\nfile = %s\n" % (
                os.path.join(workdir, "no-inventory"), os.path.join(workdir, "decisions.log")))
        base = [sys.executable, "-m", "xsguard", "--config", conf, "--xapi", sim.url]
        for name, args in (("xsguard pool --json", ["pool", "--json"]),
                           ("xsguard evacuate xs-00 --json", ["evacuate", "xs-00", "--json"])):
            times = [timed(base + args) for _ in range(SAMPLES)]
            print("%-30s whole process: median %.2f s, best %.2f s (%d runs)"
                  % (name, statistics.median(times), min(times), SAMPLES))

        source, target = hosts[0], hosts[1]
        root = api.sim.get_host_root(source)
        env = environment(os.path.join(root, "etc", "xsguard", "xsguard.conf"))
        migrating = by_host[0][0]
        vm = sim.pool.vm(migrating)
        with sim.pool.lock:
            vm["scheduled_to_be_resident_on"] = target  # as xapi sets it before the source's hook
        migrate_hook = [os.path.join(root, "etc", "xapi.d", "vm-pre-migrate", "50xsguard"), "-vmuuid", vm["uuid"],
                        "-reason", "source", "-vmdomid", vm["domid"]]
        starting = sim.pool.vm(built["vms"][RUNNING_PER_HOST])
        start_hook = [os.path.join(root, "etc", "xapi.d", "vm-pre-start", "50xsguard"), "-vmuuid",
                      starting["uuid"], "-reason", "none"]
        migrate_times, start_times = [], []
        for _ in range(HOOK_SAMPLES):
            start_times.append(timed(start_hook, env))
            migrate_times.append(timed(migrate_hook, env))
        print("on xs-00 (%d samples each, the same pool):" % HOOK_SAMPLES)
        print("  vm-pre-start hook, whole process:   median %.0f ms" % (statistics.median(start_times) * 1000))
        print("  vm-pre-migrate hook, whole process: median %.0f ms (the destination's xsguard decides)"
              % (statistics.median(migrate_times) * 1000))


if __name__ == "__main__":
    main()
