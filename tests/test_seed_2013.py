"""The seed's 2013 table end to end: simulated XenServer 6.2 and 6.1 hosts, xsguard's hook deciding.

The expected figures are the seed post's (evtchn-accounting.md, "The seed's figures"): an HVM
guest with 3 disks, 1 NIC and 1 vCPU holds 7 dom0 channels on 6.2 and 6 before it; dom0 uses
about 100 itself; 4095 ports run about 570 such VMs, 1023 ports about 150. With dom0 at 100,
570 x 7 = 3990 fit in 4095 and a 571st does not; 153 x 6 = 918 fit in 1023 and a 154th does not.
"""

import json

import pytest

from xsguard.sim import scenario
from xsguard.sim.seed2013 import SCENARIO, start_all

SEED_62 = 570  # "4096 near 570"
SEED_61 = 153  # "1024 limit hit near 150"
BEFORE_XSGUARD = 20  # VMs started through xsguard's hook on each host; the rest were running before it


def host_named(api, name):
    return api.host.get_by_name_label(name)[0]


@pytest.mark.parametrize("host_name,seed,per_vm", [("xs62", SEED_62, 7), ("xs61", SEED_61, 6)])
def test_seed_table_end_to_end(bare_sim, bare_api, host_name, seed, per_vm):
    """The host runs the seed's count of VMs through the hook and refuses the next; no device fails."""
    with open(SCENARIO) as handle:
        doc = json.load(handle)
    doc["hosts"] = [h for h in doc["hosts"] if h["name"] == host_name]
    doc["vms"] = [v for v in doc["vms"] if v["affinity"] == host_name]
    built = scenario.build(bare_sim.pool, doc)
    host = host_named(bare_api, host_name)
    vms = sorted(built["vms"], key=bare_api.VM.get_name_label)
    assert len(vms) == seed + 1
    running_before = vms[:seed - BEFORE_XSGUARD]
    for ref in running_before:
        bare_api.VM.start(ref, False, False)
    bare_api.sim.install_xsguard(host)
    outcomes = start_all(bare_sim.url, vms[len(running_before):])
    admitted = [r for r, o in outcomes.items() if o == "ok"]
    refused = [o for o in outcomes.values() if o != "ok"]
    assert len(running_before) + len(admitted) == seed
    assert len(refused) == 1
    assert refused[0][0] == "XAPI_HOOK_FAILED" and refused[0][4] == "2"
    assert "it needs %d dom0 event channels" % per_vm in refused[0][3]
    assert bare_api.sim.get_failures() == []
    assert bare_api.sim.get_dom0(host)["ports_used"] == str(100 + seed * per_vm)
    log = [e for e in bare_api.sim.get_hook_log() if e["exit_code"] not in ("0", "2")]
    assert log == []
