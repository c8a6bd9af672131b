"""xsguard evacuate next to the simulated host.evacuate: xapi's memory-only plan first, then each
destination's verdict; the command's answer and what the evacuation then does agree."""

import json

from tests.pool import failure, host_with_free, make_vm, running


def ballast(api, host, memory_gib):
    """A PV VM without devices taking ``memory_gib`` of the host's memory and only 2 ports."""
    vm = make_vm(api, "ballast-%s" % memory_gib, disks=0, nics=0, memory_gib=memory_gib, affinity=host)
    api.VM.start_on(vm, host, False, False)
    return vm


def test_evacuate_follows_xapi_onto_the_host_with_most_memory(api, workstation):
    """xapi sends every VM to the host with most free memory, which has ports for one: evacuate says
    so (exit 3, the two it refuses, where xapi puts each), and host.evacuate stops after that one."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 15)  # most memory, ports for one VM
    c = host_with_free(api, "xs-c", 100)  # ports for all, less memory
    ballast(api, c, 100)
    vms = [running(api, "vm-%d" % i, a) for i in range(3)]
    code, out, _ = workstation("evacuate", "xs-a", "--json")
    plan = json.loads(out)
    assert code == 3 and plan["fits"] is False and plan["planned_by"] == "xapi"
    assert [(m["vm_name"], m["to"], m["admitted"]) for m in plan["moves"]] == [
        ("vm-0", "xs-b", True), ("vm-1", "xs-b", False), ("vm-2", "xs-b", False)]
    assert plan["refused"] == ["vm-1", "vm-2"]
    code, text, _ = workstation("evacuate", "xs-a")
    assert text.startswith("evacuate xs-a: 2 VM(s) would be refused")
    assert "the first refused migration stops the evacuation" in text
    assert failure(api.host.evacuate, a)[:2] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard"]
    assert sorted(api.VM.get_resident_on(vm) for vm in vms) == sorted([a, a, b])
    assert api.VM.get_resident_on(vms[0]) in (a, b)  # which one went is xapi's order of migrations
    assert api.sim.get_failures() == []


def test_evacuate_that_fits_where_xapi_puts_each_vm(api, workstation):
    """With memory spread so that xapi alternates hosts, evacuate says fits (exit 0) naming xapi's
    host for each VM, and host.evacuate puts each exactly there."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 25)
    c = host_with_free(api, "xs-c", 25)
    ballast(api, c, 1.5)
    vms = {name: running(api, name, a, memory_gib=gib) for name, gib in (("vm-0", 1), ("vm-1", 2), ("vm-2", 3))}
    code, out, _ = workstation("evacuate", "xs-a", "--json")
    plan = json.loads(out)
    # largest memory first onto most free memory: vm-2 to xs-b (256 vs 254.5 GiB free), then
    # xs-c has more (254.5 vs 253): vm-1 there, then xs-b has more (253 vs 252.5): vm-0 there
    assert code == 0 and plan["fits"] is True and plan["refused"] == [] and plan["no_memory"] == []
    assert [(m["vm_name"], m["to"], m["admitted"]) for m in plan["moves"]] == [
        ("vm-2", "xs-b", True), ("vm-1", "xs-c", True), ("vm-0", "xs-b", True)]
    code, text, _ = workstation("evacuate", "xs-a")
    assert code == 0 and text.startswith("evacuate xs-a: xapi's plan fits: every host it picks admits its VMs")
    api.host.evacuate(a)
    names = {b: "xs-b", c: "xs-c"}
    assert {n: names[api.VM.get_resident_on(vm)] for n, vm in vms.items()} == {m["vm_name"]: m["to"]
                                                                               for m in plan["moves"]}
    assert api.sim.get_failures() == []
