"""``xsguard demo``: VMs start on a 2-level host until xsguard refuses one, shown as xe shows it."""

import subprocess
import sys
from typing import IO

import XenAPI

from .scenario import build
from .server import Simulator

STORY = {
    "hosts": [{"name": "xs-demo", "dom0": {"vcpus": 16, "abi": "2-level"}}],
    "vms": [{"name": "sql", "count": 45, "vcpus": 32, "hvm": True, "firmware": "uefi", "windows": True,
             "disks": 4, "nics": 2, "memory_gib": 4, "affinity": "xs-demo"}],
}


def xe_error(details: list) -> str:
    """A XAPI_HOOK_FAILED error the way ``xe vm-start`` prints it."""
    if details[0] == "XAPI_HOOK_FAILED":
        return "3rd party xapi hook failed\nhook_name: %s\nreason: %s\nstdout: %s\nexit_code: %s" % tuple(
            details[1:5])
    return "Error code: %s\nError parameters: %s" % (details[0], ", ".join(details[1:]))


def run(out: IO[str]) -> int:
    with Simulator() as sim:
        build(sim.pool, STORY)
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "", "1.0", "xsguard-demo")
        api = session.xenapi
        host = api.host.get_by_name_label("xs-demo")[0]
        dom0 = api.sim.get_dom0(host)
        out.write("Simulated host xs-demo: dom0 with %s vCPUs, %s event channels (%s ports), %s in use.\n"
                  % (dom0["vcpus"], dom0["abi"], dom0["port_limit"], dom0["ports_used"]))
        out.write("Each VM: Windows, UEFI, 32 vCPUs, 4 disks, 2 NICs.\n\n")
        refused = False
        for vm in sorted(api.VM.get_all_records_where('field "is_control_domain" = "false"').items(),
                         key=lambda kv: kv[1]["name_label"]):
            ref, rec = vm
            out.write("$ xe vm-start vm=%s\n" % rec["name_label"])
            try:
                api.VM.start(ref, False, False)
            except XenAPI.Failure as exc:
                out.write(xe_error(exc.details) + "\n\n")
                out.write("$ xe vm-param-get uuid=%s param-name=power-state\n%s\n\n"
                          % (rec["uuid"], api.VM.get_power_state(ref).lower()))
                refused = True
                break
            used = api.sim.get_dom0(host)["ports_used"]
            out.write("  started; dom0 ports in use: %s of %s\n" % (used, dom0["port_limit"]))
        failures = api.sim.get_failures()
        out.write("Devices that failed for lack of dom0 ports: %d\n\n" % len(failures))
        root = api.sim.get_host_root(host)
        out.write("$ xsguard status   (on xs-demo)\n")
        out.flush()
        subprocess.call([sys.executable, "-m", "xsguard", "--config", root + "/etc/xsguard/xsguard.conf",
                         "status"], stdout=out if out is not sys.stdout else None)
        session.xenapi.session.logout()
        session("close")()  # XenAPI's logout leaves the connection open
        return 0 if refused and not failures else 1
