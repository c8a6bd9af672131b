"""The hook's whole-process time, next to a floor measured in the same run. Prints figures.

The hook runs as xenopsd runs it (PATH-only environment, argv -vmuuid U -reason none) on a
simulated host with 100 running VMs. The floor is a bare Python process doing the least a
hook must: log in on the same local socket, read the same records with the same calls, run the
same lsevtchn, log out.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect, make_vm  # noqa: E402
from xsguard import config  # noqa: E402
from xsguard.commit import grace  # noqa: E402
from xsguard.sim.processes import environment  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

FLOOR = r"""
import http.client, socket, subprocess, sys, xmlrpc.client, XenAPI
path, host_uuid, vm_uuid, lsevtchn = sys.argv[1:5]

class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

class Local(xmlrpc.client.Transport):
    def make_connection(self, host):
        if self._connection[1] is None:
            self._connection = (host, Conn("localhost"))
        return self._connection[1]

s = XenAPI.Session("http://localhost/", transport=Local())
s.xenapi.login_with_password("root", "", "1.0", "floor")
x = s.xenapi
host_ref = list(x.host.get_all_records_where('field "uuid" = "%s"' % host_uuid))[0]
vms = x.VM.get_all_records_where('field "uuid" = "%s" or (field "is_control_domain" = "true" and '
                                 'field "resident_on" = "%s")' % (vm_uuid, host_ref))
vm_ref = [r for r, v in vms.items() if v["uuid"] == vm_uuid][0]
x.VBD.get_all_records_where('field "VM" = "%s"' % vm_ref)
x.VIF.get_all_records_where('field "VM" = "%s"' % vm_ref)
x.VM.get_all_records_where('field "scheduled_to_be_resident_on" = "%s" or (field "resident_on" = "%s" and '
                           'field "power_state" = "Running" and not (field "domid" = "1"))' % (host_ref, host_ref))
subprocess.run([lsevtchn, "0"], stdout=subprocess.PIPE, check=True)
open("/proc/interrupts").read()
x.session.logout()
"""


def run(cmd, env):
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit("%s exited %d: %s" % (cmd[0], proc.returncode, proc.stdout[-500:].decode(errors="replace")))
    return elapsed


def interpreters():
    """(label, python) to measure: this interpreter, and dom0's Python 3.6.15 when it is prepared."""
    found: List[Tuple[str, Optional[str]]] = [("%d.%d" % sys.version_info[:2], None)]
    python = os.environ.get("XSGUARD_DOM0_PYTHON") or subprocess.run(
        ["sh", "-c", "echo $(pyenv prefix 3.6.15 2>/dev/null)/bin/python3.6"], stdout=subprocess.PIPE
    ).stdout.decode().strip()
    if python and os.path.exists(python):
        found.append(("3.6", python))
    return found


def main(samples=30):
    for label, python in interpreters():
        interpreter = None
        if python:
            from xsguard.sim import dom0python

            try:
                interpreter = dom0python.interpreter(python, tempfile.mkdtemp(prefix="xsguard-bench-dom0-"))
            except dom0python.Dom0PythonError as exc:
                print("Python %s: not measured (%s)" % (label, exc))
                continue
        measure(label, interpreter, samples)


def measure(label, interpreter, samples):
    with Simulator(interpreter=interpreter) as sim:
        floor_python = interpreter or sys.executable
        api = connect(sim.url).xenapi
        host = api.sim.add_host("xs-a", {"vcpus": "16"})
        for i in range(100):
            ref = make_vm(api, "running-%d" % i, vcpus=2, hvm=True, disks=2, nics=1, affinity=host)
            api.VM.start(ref, False, False)
        root = api.sim.get_host_root(host)
        hook = os.path.join(root, "etc", "xapi.d", "vm-pre-start", "50xsguard")
        lsevtchn = os.path.join(root, "usr", "libexec", "xen", "bin", "lsevtchn")
        env = environment(os.path.join(root, "etc", "xsguard", "xsguard.conf"))
        host_uuid = api.host.get_uuid(host)
        candidates = [api.VM.get_uuid(make_vm(api, "cand-%d" % i, vcpus=2, hvm=True, disks=2, nics=1))
                      for i in range(samples)]
        ports = api.sim.get_dom0(host)["ports_used"]
        # steady state: the running VMs' domains have held their whole need for longer than the ledger
        # keeps such VMs (decisions in flight may still hold an older reading of dom0 until then)
        time.sleep(grace(config.defaults()) + 1)
        hook_times, floor_times = [], []
        for uuid in candidates:
            hook_times.append(run([hook, "-vmuuid", uuid, "-reason", "none"], env))
            floor_times.append(run([floor_python, "-c", FLOOR, sim.socket_path, host_uuid, uuid, lsevtchn], env))
        hook_median = statistics.median(hook_times)
        floor_median = statistics.median(floor_times)
        print("Python %s: host with 100 running VMs, %s dom0 ports in use; %d samples each" % (label, ports, samples))
        print("  hook, whole process:   median %.0f ms  p90 %.0f ms" % (
            hook_median * 1000, sorted(hook_times)[int(samples * 0.9) - 1] * 1000))
        print("  floor, whole process:  median %.0f ms" % (floor_median * 1000))
        print("  hook / floor:          %.2fx (target <= 1.1x)" % (hook_median / floor_median))


if __name__ == "__main__":
    main()
