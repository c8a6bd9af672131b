"""``make demo-2013``: the 2013 XenServer 6.x figures, end to end on simulated 6.2 and 6.1 hosts.

The seed post: an HVM guest with 3 disks, 1 NIC and 1 vCPU holds 7 dom0 channels on 6.2 (6
before it); dom0 itself uses about 100 of its 4095 ports (1023 on a 32-bit dom0), so a host
breaks near 570 such VMs (150 before 6.2). Each host's guests hold what the seed says (the
simulator's ``xs62`` and ``xs61`` stacks), xsguard runs with the matching profile, every VM of
``scenarios/seed-2013.json`` is started, four at a time as xenopsd runs them, and xsguard
refuses those that would not fit.
"""

import os
import queue
import sys
import threading
from typing import IO, Any, Dict, List

import XenAPI

from .demo import xe_error
from .scenario import load_file
from .server import Simulator

SCENARIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios", "seed-2013.json")
XENOPSD_WORKERS = 4


def start_all(url: str, refs: List[str], workers: int = XENOPSD_WORKERS) -> Dict[str, Any]:
    """Start every VM, ``workers`` at a time, each worker with its own session: "ok" or the error's details."""
    todo: "queue.Queue[str]" = queue.Queue()
    for ref in refs:
        todo.put(ref)
    outcomes: Dict[str, Any] = {}

    def work() -> None:
        session = XenAPI.Session(url)
        session.xenapi.login_with_password("root", "", "1.0", "xsguard-demo-2013")
        try:
            while True:
                try:
                    ref = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    session.xenapi.VM.start(ref, False, False)
                    outcomes[ref] = "ok"
                except XenAPI.Failure as exc:
                    outcomes[ref] = exc.details
        finally:
            session.xenapi.session.logout()
            session("close")()  # XenAPI's logout leaves the connection open

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def run(out: IO[str], scenario: str = SCENARIO) -> int:
    with Simulator() as sim:
        built = load_file(sim.pool, scenario)
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "", "1.0", "xsguard-demo-2013")
        api = session.xenapi
        clean = True
        for host in built["hosts"]:
            name = api.host.get_name_label(host)
            dom0 = api.sim.get_dom0(host)
            refs = [r for r in built["vms"] if api.VM.get_affinity(r) == host]
            out.write("Host %s: dom0 with %s ports (%s ABI), %s in use by dom0 itself; %d HVM VMs of 3 disks, "
                      "1 NIC, 1 vCPU to start.\n" % (name, dom0["port_limit"], dom0["abi"], dom0["ports_used"],
                                                    len(refs)))
            out.flush()
            outcomes = start_all(sim.url, refs)
            admitted = sorted(api.VM.get_name_label(r) for r, o in outcomes.items() if o == "ok")
            refused = sorted((api.VM.get_name_label(r), o) for r, o in outcomes.items() if o != "ok")
            dom0 = api.sim.get_dom0(host)
            out.write("  started %d; refused %d; dom0 ports in use %s of %s\n"
                      % (len(admitted), len(refused), dom0["ports_used"], dom0["port_limit"]))
            for vm_name, details in refused[:1]:
                out.write("$ xe vm-start vm=%s\n%s\n" % (vm_name, xe_error(details)))
            out.write("\n")
            clean = clean and bool(refused)
        failures = api.sim.get_failures()
        out.write("Devices that failed for lack of dom0 ports: %d\n" % len(failures))
        session.xenapi.session.logout()
        session("close")()
        return 0 if clean and not failures else 1


if __name__ == "__main__":
    sys.exit(run(sys.stdout, *sys.argv[1:2]))
