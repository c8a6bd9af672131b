"""The disk backend dom0 runs, found from its IRQs and sysfs, so that the default charge is exact
on XenServer (tapdisk3) and on plain Xen (blkback); and what audit suggests when it is not."""

import json
import re

import pytest

from tests import records
from tests.fixtures_path import PV, read
from tests.pool import make_vm, small_host, wait_for
from xsguard import audit, gather, probes
from xsguard.model.need import vm_need
from xsguard.model.profiles import XS8, BackendSeen, storage_backend_found, with_overrides

NONE = BackendSeen(0, 0, 0, 0, False, False)


def sysfs(tmp_path, blkback=False, blktap=False, vbds=0, minors=0):
    """A /sys with what the test names; its module directory (``[dom0] sys_module``)."""
    module = tmp_path / "sys" / "module"
    module.mkdir(parents=True)
    if blkback:
        params = module / "xen_blkback" / "parameters"
        params.mkdir(parents=True)
        (params / "max_queues").write_text("2\n")
    if blktap:
        (module / "blktap").mkdir()
    devices = tmp_path / "sys" / "bus" / "xen-backend" / "devices"
    devices.mkdir(parents=True)
    for n in range(vbds):
        (devices / ("vbd-%d-51712" % (5 + n))).mkdir()
    for n in range(minors):
        (tmp_path / "sys" / "class" / "blktap2" / ("blktap%d" % n)).mkdir(parents=True)
    return str(module)


def test_measured_blkback_host_is_found_and_charged_exactly(tmp_path):
    """The captured Xen 4.17 dom0 running case v2d1n1 (blkback's module loaded, its /proc/interrupts
    with the guest's two blkif-backend rings): blkback is found from its IRQs, and the default
    profile charges the 2-vCPU, 1-disk, 1-NIC guest what dom0 held for it (8), not tapdisk3's 7."""
    module = sysfs(tmp_path, blkback=True)
    backend = probes.backend_params(module, read(PV, "case-v2d1n1", "after.interrupts.txt"))
    assert (backend[probes.VBD_BACKEND], backend[probes.VBD_BACKEND_EVIDENCE]) == (
        "blkback", "in use: 2 blkif-backend IRQs")
    measured = re.search(r"^v2d1n1 .* delta=(\d+)", read(PV, "summary.txt"), re.M)
    assert measured is not None
    held = int(measured.group(1))
    facts = gather.host_facts({"VCPUs_at_startup": "2"}, backend)
    assert vm_need(records.vm(2), records.disks(1), records.nics(1), facts, XS8).total == held
    assert vm_need(records.vm(2), records.disks(1), records.nics(1), facts._replace(vbd_backend=None),
                   XS8).total == held - 1


@pytest.mark.parametrize("seen,found", [
    (NONE, None),
    (NONE._replace(blkback_loaded=True), "blkback"),
    (NONE._replace(blkback_loaded=True, blktap_loaded=True), "tapdisk"),
    (NONE._replace(blkback_loaded=True, blktap_loaded=True, blkback_devices=1), "blkback"),
    (NONE._replace(blkback_loaded=True, tapdisk_rings=4), "tapdisk"),
    (NONE._replace(tapdisk_minors=2), "tapdisk"),
    (NONE._replace(tapdisk_rings=4, blkback_rings=1), "blkback"),
])
def test_backend_in_use_beats_a_module_loaded(seen, found):
    """In use (IRQs, devices, minors) beats loaded; both in use: blkback (the larger charge);
    nothing at all: none found (the charge is then tapdisk3's)."""
    assert storage_backend_found(seen)[0] == found


def test_sysfs_is_read_for_devices_minors_and_modules(tmp_path):
    """Without IRQs to read (``need``), blkback's devices and the blktap2 minors in sysfs say it."""
    assert probes.backend_params(sysfs(tmp_path / "a", blkback=True, blktap=True, vbds=2))[probes.VBD_BACKEND] \
        == "blkback"
    found = probes.backend_params(sysfs(tmp_path / "b", blkback=True, blktap=True, minors=3))
    assert (found[probes.VBD_BACKEND], found[probes.VBD_BACKEND_EVIDENCE]) == ("tapdisk", "in use: 3 blktap2 minors")
    assert probes.VBD_BACKEND not in probes.backend_params(sysfs(tmp_path / "c"))


def test_audit_suggests_the_backend_first_and_never_the_control_ring_for_pv():
    """A PV guest predicted 7 that holds 8 on an undetected blkback dom0: the cover is
    vbd_backend = blkback, exactly, and ctrl_ring (Windows only, never a PV guest) is not offered;
    for an HVM guest it is, after the backend; nothing covering: an allowance of the difference."""
    facts = gather.host_facts({"VCPUs_at_startup": "2"}, {"xen_blkback.max_queues": "2",
                                                             "xen_netback.max_queues": "2"})
    pv = gather.Described(records.vm(2), records.disks(1), records.nics(1), [], None)
    assert gather.predict(facts, XS8, pv).total == 7
    assert audit.cover_for(8, pv, facts, XS8) == "[need] vbd_backend = blkback (exact)"
    hvm = pv._replace(vm=records.vm(2, hvm=True))
    predicted = gather.predict(facts, XS8, hvm).total
    assert audit.cover_for(predicted + 1, hvm, facts, XS8) == "[need] vbd_backend = blkback (exact), " \
        "[need] ctrl_ring = always (exact)"
    blkback = with_overrides(XS8, {"vbd_backend": "blkback"})
    assert audit.cover_for(40, pv, facts, blkback) == "[need] extra_per_vm = 32"


def test_status_says_which_backend_was_found(api):
    """status names the disk backend charged and what showed it: none found before any guest,
    tapdisk3's IRQs once one runs on a XenServer host; [need] vbd_backend when set."""
    host = small_host(api, port_limit=1000, vcpus=4)
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["storage_backend"] == {"charged": "tapdisk", "found": None,
                                         "evidence": "no disk backend found in dom0", "configured": None}
    vm = make_vm(api, "web", disks=2, affinity=host)
    api.VM.start(vm, False, False)
    domid = api.VM.get_domid(vm)
    wait_for(lambda: api.sim.get_dom0(host)["by_remote_domain"].get(domid) == "6")
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["storage_backend"] == {"charged": "tapdisk", "found": "tapdisk",
                                         "evidence": "in use: 2 evtchn:tapdisk IRQs", "configured": None}
    api.sim.set_xsguard_config(host, {"need.vbd_backend": "blkback"})
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert (status["storage_backend"]["charged"], status["storage_backend"]["configured"]) == ("blkback", "blkback")


def test_need_reads_the_backend_as_a_decision_does(api):
    """On a host whose dom0 runs blkback (the captured Xen 4.17 stack), fn=need charges a 2-vCPU
    guest's disk 2 rings once blkback's IRQs show in /proc/interrupts, as the start's decision does
    (the simulated dom0 has no /sys/module/xen_blkback: the IRQs alone say it)."""
    host = small_host(api, port_limit=1000, vcpus=2)
    api.sim.set_dom0(host, {"stack": "xen417"})
    first = make_vm(api, "first", vcpus=2, affinity=host)
    api.VM.start(first, False, False)
    domid = api.VM.get_domid(first)
    wait_for(lambda: api.sim.get_dom0(host)["by_remote_domain"].get(domid) == "8")
    second = make_vm(api, "second", vcpus=2, affinity=host)
    need = json.loads(api.host.call_plugin(host, "xsguard", "need", {"vm_uuid": api.VM.get_uuid(second)}))
    assert need["total"] == 1 + 1 + 2 + 2 * 2
    assert need["breakdown"][2]["why"] == "blkback: 2 rings, once PV drivers connect (the backend dom0 runs)"
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["storage_backend"]["found"] == "blkback"
    assert status["storage_backend"]["evidence"] == "in use: 2 blkif-backend IRQs"
