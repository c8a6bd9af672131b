"""The hook's whole-process time, next to a floor measured in the same run. Prints figures.

The hook runs as xenopsd runs it (PATH-only environment, argv -vmuuid U -reason none) on a
simulated host with 100 running VMs. The floor is a bare Python process doing the least a
hook must: log in on the same local socket, make the very xapi calls the hook just made for
the same VM (the simulator records them with their arguments, and the floor replays them in
order), run the same lsevtchn, read the same /proc/interrupts, log out. Each floor runs once the hook's
detached writer has logged its decision, so that the two never share the CPU. This machine's
speed drifts from run to run (the floor's median has ranged from 64 to 103 ms): each hook is also
set against the floor run just after it.
"""

import json
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
import http.client, json, socket, subprocess, sys, xmlrpc.client, XenAPI
path, calls, lsevtchn, interrupts = sys.argv[1:5]

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
with open(calls) as handle:
    for method, args in json.load(handle):
        call = s.xenapi
        for part in method.split("."):
            call = getattr(call, part)
        call(*args)
subprocess.run([lsevtchn, "0"], stdout=subprocess.PIPE, check=True)
with open(interrupts) as handle:
    handle.read()
s.xenapi.session.logout()
"""


def run(cmd, env):
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit("%s exited %d: %s" % (cmd[0], proc.returncode, proc.stdout[-500:].decode(errors="replace")))
    return elapsed


def wait_for_record(decision_log, vm_uuid, timeout=10.0):
    """Until the hook's detached writer has logged its decision on ``vm_uuid``."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        with open(decision_log, encoding="utf-8") as handle:
            # a line without its newline is still being written
            if any(json.loads(line).get("vm_uuid") == vm_uuid for line in handle if line.endswith("\n")):
                return
        time.sleep(0.005)
    raise SystemExit("the hook's decision on %s was not logged within %.0f s" % (vm_uuid, timeout))


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
        conf = os.path.join(root, "etc", "xsguard", "xsguard.conf")
        env = environment(conf)
        candidates = [api.VM.get_uuid(make_vm(api, "cand-%d" % i, vcpus=2, hvm=True, disks=2, nics=1))
                      for i in range(samples)]
        ports = api.sim.get_dom0(host)["ports_used"]
        # steady state: the running VMs' domains have held their whole need for longer than the ledger
        # keeps such VMs (decisions in flight may still hold an older reading of dom0 until then)
        time.sleep(grace(config.defaults()) + 1)
        host_config = config.load(conf)
        interrupts, decision_log = host_config.dom0.proc_interrupts, host_config.log.file
        calls_file = os.path.join(tempfile.mkdtemp(prefix="xsguard-bench-calls-"), "calls.json")
        hook_times: List[float] = []
        floor_times: List[float] = []
        made: List[int] = []
        for uuid in candidates:
            before = len(api.sim.get_calls())
            hook_times.append(run([hook, "-vmuuid", uuid, "-reason", "none"], env))
            wait_for_record(decision_log, uuid)
            calls = [(method, args) for originator, method, args in api.sim.get_calls_made(str(before))
                     if originator == "xsguard"]
            made.append(len(calls))
            with open(calls_file, "w") as handle:
                json.dump(calls, handle)
            floor_times.append(run([floor_python, "-c", FLOOR, sim.socket_path, calls_file, lsevtchn, interrupts],
                                   env))
        hook_median = statistics.median(hook_times)
        floor_median = statistics.median(floor_times)
        print("Python %s: host with 100 running VMs, %s dom0 ports in use; %d samples each" % (label, ports, samples))
        print("  hook, whole process:   median %.0f ms  p90 %.0f ms" % (
            hook_median * 1000, sorted(hook_times)[int(samples * 0.9) - 1] * 1000))
        print("  floor, whole process:  median %.0f ms (the same %d to %d xapi calls, login and logout aside)"
              % (floor_median * 1000, min(made), max(made)))
        paired = statistics.median(h / f for h, f in zip(hook_times, floor_times))
        print("  hook / floor:          %.2fx (target <= 1.1x); the median of the %d ratios of a hook to the floor"
              " run just after it: %.2fx" % (hook_median / floor_median, samples, paired))


if __name__ == "__main__":
    main()
