"""The hook, the plugin and the command reach one decision through one path."""

import json
import os

from tests.pool import failure, make_vm, small_host


def plugin(api, host, fn, **args):
    return json.loads(api.host.call_plugin(host, "xsguard", fn, args))


def test_corrupt_ledger_check_status_and_hook_agree(api):
    """With a corrupt ledger, check and status charge the earlier admissions the hook charges:
    all three find 5 ports free and refuse a VM that needs 10."""
    host = small_host(api, port_limit=40 + 8 + 25, vcpus=4)  # dom0 holds 40, margin 8: 25 for guests
    for name in ("a", "b"):  # each needs 10 (2 vCPUs, HVM, 1 disk, 1 NIC), holds 5 until its drivers connect
        vm = make_vm(api, name, vcpus=2, hvm=True, disks=1, nics=1, affinity=host)
        api.sim.set_guest(vm, {"connect_delay": "30"})
        api.VM.start(vm, False, False)
    ledger = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json")
    with open(ledger, "w") as handle:
        handle.write('{"version": 1, "entries": [{"vm_uuid": ')
    c = make_vm(api, "c", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)

    check = plugin(api, host, "check", vm_uuid=api.VM.get_uuid(c))
    assert (check["verdict"], check["need"], check["promised"], check["free"]) == ("refuse", 10, 10, 5)
    status = plugin(api, host, "status")
    assert (status["promised"], status["ports_free"]) == (10, 5)
    assert sorted(p["vm_name"] for p in status["promises"]) == ["a", "b"]
    assert os.listdir(os.path.dirname(ledger)).count("ledger.json") == 1  # asking set nothing aside

    details = failure(api.VM.start, c, False, False)
    assert details[0] == "XAPI_HOOK_FAILED" and details[4] == "2"
    assert "it needs 10 dom0 event channels; 5 are left" in details[3]
    assert "(73: 50 in use, 10 promised to VMs starting, 8 kept free for dom0)" in details[3]
