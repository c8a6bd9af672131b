"""What a VM needs: profiles, the reference's worked examples, edge cases, the measured host."""

import os
import re

import pytest

from tests import records
from xsguard.errors import NotACandidate
from xsguard.model.need import LEARNED, LEARNED_HELD, LEARNED_OS, HostFacts, effective_domain_type, learned_now, vm_need
from xsguard.model.profiles import XS8, XS61, XS62, with_overrides

D16 = HostFacts(dom0_vcpus=16)
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "xen417-pv-dom0-2vcpu")


def total(vm, vbds=(), vifs=(), host=D16, profile=XS8, **kw):
    return vm_need(vm, list(vbds), list(vifs), host, profile, **kw).total


def test_worked_example_linux_bios_hvm():
    """Linux BIOS HVM, 2 vCPUs, 1 VBD, 1 VIF on a 16-vCPU dom0 costs 10."""
    assert total(records.vm(2, hvm=True), records.disks(1), records.nics(1)) == 10


def test_worked_example_windows_uefi_small():
    """Windows UEFI HVM, 4 vCPUs, 2 VBDs, 1 VIF costs 22."""
    vm = records.vm(4, hvm=True, firmware="uefi", windows=True)
    assert total(vm, records.disks(2), records.nics(1)) == 22


def test_worked_example_windows_uefi_large():
    """Windows UEFI HVM, 32 vCPUs, 4 VBDs, 2 VIFs costs 105 (queues capped at 8)."""
    vm = records.vm(32, hvm=True, firmware="uefi", windows=True)
    assert total(vm, records.disks(4), records.nics(2)) == 105


def test_breakdown_lines_name_each_consumer():
    """The breakdown has one line per consumer with its count and a reason."""
    need = vm_need(records.vm(4, hvm=True, firmware="uefi", windows=True), records.disks(2),
                   records.nics(1), D16, XS8)
    got = {line.consumer: line.ports for line in need.lines}
    assert got == {"xenstore": 1, "console": 1, "qemu-ioreq": 5, "varstored": 4,
                   "vbd 0 (Disk)": 1, "vbd 1 (Disk)": 1, "vif 0": 9}
    assert "4 queues x 2" in [ln.why for ln in need.lines if ln.consumer == "vif 0"][0]
    assert [ln.consumer for ln in need.largest(3)] == ["vif 0", "qemu-ioreq", "varstored"]


@pytest.mark.parametrize("profile,expected", [(XS62, 7), (XS61, 6)])
def test_2013_profiles(profile, expected):
    """HVM, 3 disks, 1 NIC, 1 vCPU: 7 channels on XenServer 6.2, 6 before it."""
    assert total(records.vm(1, hvm=True), records.disks(3), records.nics(1), profile=profile) == expected


def test_2013_profile_pv_guest_has_console():
    """The 6.x figures charge a PV guest its console: 1 disk + 1 NIC + xenstore + console."""
    assert total(records.vm(4), records.disks(1), records.nics(1), profile=XS62) == 4


@pytest.mark.parametrize("declared,policy,expected", [
    ("unspecified", "", "pv"),
    ("unspecified", "BIOS order", "hvm"),
    ("", "BIOS order", "hvm"),
    ("pv_in_pvh", "", "pv_in_pvh"),
    ("pvh", "", "pvh"),
])
def test_domain_type_derivation(declared, policy, expected):
    """``unspecified`` is derived as xapi does: no HVM boot policy means PV."""
    assert effective_domain_type({"domain_type": declared, "HVM_boot_policy": policy}) == expected


@pytest.mark.parametrize("dtype", ["pv", "pvh", "pv_in_pvh"])
def test_pv_family_has_no_qemu(dtype):
    """PV, PVH and PV-in-PVH guests get no device model: 2 + disk + NIC queues."""
    vm = records.vm(2, domain_type=dtype, HVM_boot_policy="")
    assert total(vm, records.disks(1), records.nics(1)) == 2 + 1 + 2 * 2


def test_unspecified_with_boot_policy_costs_as_hvm():
    """An ``unspecified`` VM with an HVM boot policy is charged QEMU."""
    vm = records.vm(2, hvm=True, domain_type="unspecified")
    assert total(vm) == 2 + 3


def test_hvm_cd_and_floppy_are_emulated():
    """CD drives and floppies of HVM guests cost nothing: QEMU emulates them."""
    vm = records.vm(1, hvm=True)
    floppy = {"type": "Floppy", "empty": True, "userdevice": "4"}
    assert total(vm, [records.cd(empty=False), records.cd(empty=True, userdevice="5"), floppy]) == 2 + 2


@pytest.mark.parametrize("dtype", ["pv", "pv_in_pvh", "pvh"])
def test_empty_cd_of_pv_family_costs_nothing(dtype):
    """xenopsd unplugs an empty CD drive of any guest but HVM: xenstore + console only."""
    vm = records.vm(1, domain_type=dtype, HVM_boot_policy="")
    assert total(vm, [records.cd(empty=True)]) == 2


def test_pv_loaded_cd_is_charged_a_ring():
    """A PV guest's CD drive with a disc in it is a PV disk: one tapdisk3 ring."""
    assert total(records.vm(1), [records.cd(empty=False)]) == 3


def test_uefi_adds_varstored_bios_does_not():
    """varstored binds one port per vCPU for UEFI HVM guests only."""
    bios = total(records.vm(8, hvm=True, firmware="bios"))
    uefi = total(records.vm(8, hvm=True, firmware="uefi"))
    assert uefi - bios == 8


def test_no_devices():
    """A VM with no VBD and no VIF costs xenstore and console only (PV)."""
    assert total(records.vm(1)) == 2


def test_vcpus_max_counts_not_vcpus_at_startup():
    """Hot-pluggable vCPUs count: QEMU binds ioreq ports for VCPUs_max."""
    vm = records.vm(2, hvm=True)
    vm["VCPUs_max"] = "8"
    assert total(vm, (), records.nics(1)) == 2 + 9 + 8 * 2


def test_64_vcpus_caps_queues_at_8():
    """64 vCPUs: QEMU 65, varstored 64, but netback queues stop at 8."""
    vm = records.vm(64, hvm=True, firmware="uefi")
    assert total(vm, records.disks(1), records.nics(1)) == 2 + 65 + 64 + 1 + 16


def test_queues_capped_by_dom0_vcpus():
    """On a 2-vCPU dom0 a 4-vCPU guest gets 2 queues per VIF."""
    host = HostFacts(dom0_vcpus=2)
    assert total(records.vm(4), (), records.nics(1), host=host) == 2 + 2 * 2


def test_netback_parameters_beat_dom0_vcpus():
    """dom0's netback max_queues and separate_tx_rx_irq are used when known."""
    host = HostFacts(dom0_vcpus=16, netback_max_queues=3, netback_split=False)
    assert total(records.vm(8), (), records.nics(1), host=host) == 2 + 3


def test_vgpu_is_charged_vcpus_plus_one():
    """A vGPU is charged V+1 (the reference marks this figure unverified)."""
    vm = records.vm(4, hvm=True)
    assert total(vm, vgpus=[{"device": "0"}]) == 2 + 5 + 5


def test_site_overrides():
    """Each per-device figure can be overridden by the site."""
    profile = with_overrides(XS8, {"netback_queue_cap": 1, "split_event_channels": False,
                                   "rings_per_vbd": 2, "ctrl_ring": "always", "extra_per_vm": 5})
    assert total(records.vm(4), records.disks(2), records.nics(1), profile=profile) == 2 + 4 + 2 + 5


@pytest.mark.parametrize("flag", ["is_a_template", "is_a_snapshot", "is_control_domain"])
def test_non_candidates_are_refused_clearly(flag):
    """Templates, snapshots and control domains are not VMs that start."""
    record = records.vm(1)
    record[flag] = True
    with pytest.raises(NotACandidate) as info:
        vm_need(record, [], [], D16, XS8)
    assert "nothing to admit" in info.value.message


def test_bad_vcpus_is_an_error():
    """A VCPUs_max that is not a number is reported, not guessed."""
    with pytest.raises(ValueError, match="VCPUs_max"):
        vm_need(records.vm(1, VCPUs_max="many"), [], [], D16, XS8)


def _measured_cases():
    cases = []
    with open(os.path.join(FIXTURES, "summary.txt")) as handle:
        for line in handle:
            m = re.match(r"(\S+) type=(pvh?) vcpus=(\d+) disks=(\d+) vifs=(\d+) ready=1 .* delta=(\d+)", line)
            if m:
                cases.append((m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                              int(m.group(6))))
    return cases


@pytest.mark.parametrize("name,dtype,vcpus,ndisks,nnics,delta", _measured_cases())
def test_model_matches_the_measured_host(name, dtype, vcpus, ndisks, nnics, delta):
    """With the measured host's backends (blkback, 2 queues), the model gives the measured cost."""
    host = HostFacts(dom0_vcpus=2, netback_max_queues=2, netback_split=True, blkback_max_queues=2)
    profile = with_overrides(XS8, {"vbd_backend": "blkback"})
    vm = records.vm(vcpus, domain_type=dtype)
    assert total(vm, records.disks(ndisks), records.nics(nnics), host=host, profile=profile) == delta


def test_measured_cases_are_all_read():
    """Every completed case of the capture is compared (the PVH run that never connected is not)."""
    assert len(_measured_cases()) == 13


# Records shaped like those XenServer 5.5 to 8 return (the control ring, the empty CD, guest metrics)

CENTOS7_HVM_PLATFORM = {"timeoffset": "0", "device-model": "qemu-upstream-compat", "videoram": "8",
                        "hpet": "true", "secureboot": "false", "vga": "std", "apic": "true",
                        "device_id": "0001", "viridian": "false", "nx": "true", "pae": "true", "acpi": "1"}
XS6_PV_LINUX_PLATFORM = {"nx": "true", "acpi": "true", "apic": "true", "pae": "true", "viridian": "true"}
WINDOWS_OS_VERSION = {"name": "Microsoft Windows Server 2019 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2",
                      "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0",
                      "build": "17763"}
CENTOS_OS_VERSION = {"name": "CentOS Linux release 7.9.2009 (Core)", "uname": "3.10.0-1160.el7.x86_64",
                     "distro": "centos", "major": "7", "minor": "9"}


def test_linux_hvm_with_device_id_has_no_control_ring():
    """CentOS 7 HVM (device_id 0001, viridian false), 2 vCPUs, 1 disk, 1 NIC: 1+1+3+1+4 = 10, no ring."""
    vm = records.vm(2, hvm=True, platform=CENTOS7_HVM_PLATFORM)
    need = vm_need(vm, records.disks(1), records.nics(1), D16, XS8,
                   guest_metrics={"os_version": CENTOS_OS_VERSION, "PV_drivers_detected": True})
    assert need.total == 10
    assert "control ring" not in [ln.why for ln in need.lines if ln.consumer == "vif 0"][0]


def test_pv_guest_from_xs6_template_has_no_control_ring():
    """A PV guest of a 6.x Linux template (viridian true), 1 vCPU, 1 disk, empty CD, 2 NICs: 1+1+1+0+2+2 = 7."""
    vm = records.vm(1, platform=XS6_PV_LINUX_PLATFORM, PV_bootloader="pygrub")
    assert total(vm, records.disks(1) + [records.cd(empty=True)], records.nics(2)) == 7


def test_windows_known_only_by_guest_metrics_gets_control_rings():
    """An HVM guest with neither viridian nor device_id whose guest agent names Windows: 22, as the worked example."""
    vm = records.vm(4, hvm=True, firmware="uefi", platform={"device_id": "0002"})
    metrics = {"os_version": WINDOWS_OS_VERSION, "PV_drivers_detected": True}
    assert total(vm, records.disks(2), records.nics(1), guest_metrics=metrics) == 22
    assert total(vm, records.disks(2), records.nics(1)) == 21


def test_guest_metrics_naming_linux_do_not_remove_the_ring_viridian_asks_for():
    """An HVM guest with viridian=true keeps its control ring whatever its own agent reports."""
    vm = records.vm(1, hvm=True, platform={"viridian": "true"})
    metrics = {"os_version": CENTOS_OS_VERSION}
    assert total(vm, (), records.nics(1), guest_metrics=metrics) == 2 + 2 + 2 + 1


def test_pv_guest_naming_windows_has_no_control_ring():
    """A PV guest is never Windows: guest metrics claiming it add nothing."""
    metrics = {"os_version": WINDOWS_OS_VERSION}
    assert total(records.vm(1), (), records.nics(1), guest_metrics=metrics) == 2 + 2


def test_backend_max_charges_what_a_greedy_guest_takes():
    """1 vCPU, 1 disk, 1 NIC on a 16-vCPU dom0: negotiated 5; backend_max 35 (16 queues x 2)."""
    vm = records.vm(1)
    assert total(vm, records.disks(1), records.nics(1)) == 5
    greedy = with_overrides(XS8, {"vif_queues": "backend_max"})
    assert total(vm, records.disks(1), records.nics(1), profile=greedy) == 35


def test_backend_max_follows_netback_max_queues():
    """backend_max charges dom0's netback max_queues when sysfs gives it: 1 + 1 + 4 x 2."""
    host = HostFacts(dom0_vcpus=16, netback_max_queues=4)
    greedy = with_overrides(XS8, {"vif_queues": "backend_max"})
    assert total(records.vm(1), (), records.nics(1), host=host, profile=greedy) == 10


def test_vbd_rings_backend_max_for_blkback():
    """blkback with max_queues 4: a 1-vCPU guest's 2 disks are 1 ring each negotiated, 4 each at backend_max."""
    host = HostFacts(dom0_vcpus=16, blkback_max_queues=4)
    blk = with_overrides(XS8, {"vbd_backend": "blkback"})
    assert total(records.vm(1), records.disks(2), host=host, profile=blk) == 2 + 2
    greedy = with_overrides(blk, {"vbd_rings": "backend_max"})
    assert total(records.vm(1), records.disks(2), host=host, profile=greedy) == 2 + 8


def test_vbd_rings_backend_max_leaves_tapdisk_at_one():
    """tapdisk3 serves one ring whatever the guest asks: backend_max changes nothing there."""
    greedy = with_overrides(XS8, {"vbd_rings": "backend_max"})
    assert total(records.vm(4), records.disks(3), profile=greedy) == 2 + 3


@pytest.mark.parametrize("profile,expected", [(XS62, 7), (XS61, 6)])
def test_2013_stacks_had_one_queue_whatever_the_policy(profile, expected):
    """The 6.x backends served one queue: backend_max leaves the seed's 7 and 6 alone."""
    greedy = with_overrides(profile, {"vif_queues": "backend_max", "vbd_rings": "backend_max"})
    assert total(records.vm(1, hvm=True), records.disks(3), records.nics(1), profile=greedy) == expected


# What was learned while the VM ran (VM.other_config), read by the model: it only ever raises a need

def test_learned_figure_raises_the_need_with_a_line_naming_it():
    """A PV guest predicted 5 that was seen holding 35: charged 35, the 30 more on a line naming the key."""
    vm = records.vm(1, other_config={LEARNED_HELD: "35"})
    need = vm_need(vm, records.disks(1), records.nics(1), D16, XS8)
    assert need.total == 35
    assert (need.lines[-1].consumer, need.lines[-1].ports) == (LEARNED, 30)
    assert "other_config:%s" % LEARNED_HELD in need.lines[-1].why


@pytest.mark.parametrize("written", ["3", "5", "-40", "eight", "", " ", "\u00b2", "1e3", "9" * 10])
def test_learned_figure_below_the_model_or_unreadable_changes_nothing(written):
    """What a VM's owner may write (a lower figure, a negative one, words, a Unicode digit, an absurd
    length) leaves the need at the model's 5 and adds no line."""
    vm = records.vm(1, other_config={LEARNED_HELD: written})
    need = vm_need(vm, records.disks(1), records.nics(1), D16, XS8)
    assert (need.total, [ln.consumer for ln in need.lines if ln.consumer == LEARNED]) == (5, [])


def test_learned_windows_charges_the_control_ring_without_guest_metrics():
    """An HVM guest (device_id only) whose agent named Windows when it last ran: its start, guest
    metrics gone, is charged the ring (8, not 7), the VIF line naming why; a PV guest never is."""
    vm = records.vm(1, hvm=True, platform={"device_id": "0002"},
                    other_config={LEARNED_OS: "Microsoft Windows Server 2019 Standard"})
    need = vm_need(vm, records.disks(1), records.nics(1), D16, XS8)
    assert need.total == 8
    assert "other_config:%s" % LEARNED_OS in need.lines[-1].why
    assert total(records.vm(1, other_config={LEARNED_OS: "Windows"}), (), records.nics(1)) == 4


def test_learned_os_naming_linux_keeps_the_ring_viridian_asks_for():
    """An owner writing a Linux name into the learned OS does not remove viridian's ring."""
    vm = records.vm(1, hvm=True, platform={"viridian": "true"}, other_config={LEARNED_OS: "Debian 12"})
    assert total(vm, (), records.nics(1)) == 2 + 2 + 2 + 1


def test_learned_now_writes_only_a_new_maximum():
    """What to write after seeing a VM run: what dom0 holds only above the need as charged (the
    learned figure included), the agent's Windows name once; nothing for a PV guest's OS."""
    metrics = {"os_version": WINDOWS_OS_VERSION}
    hvm = records.vm(1, hvm=True, platform={"device_id": "0002"})
    need = vm_need(hvm, records.disks(1), records.nics(1), D16, XS8, guest_metrics=metrics)
    assert learned_now(hvm, need, 8, metrics) == {LEARNED_OS: "Microsoft Windows Server 2019 Standard"}
    assert learned_now(hvm, need, 9, None) == {LEARNED_HELD: "9"}
    known = dict(hvm, other_config={LEARNED_OS: "Microsoft Windows Server 2019 Standard", LEARNED_HELD: "9"})
    need = vm_need(known, records.disks(1), records.nics(1), D16, XS8)
    assert need.total == 9
    assert learned_now(known, need, 9, metrics) == {}
    assert learned_now(known, need, 10, metrics) == {LEARNED_HELD: "10"}
    pv = records.vm(1)
    assert learned_now(pv, vm_need(pv, [], [], D16, XS8), 2, metrics) == {}


def test_learned_windows_name_always_names_windows():
    """An agent naming Windows only in its distro field is kept as ``windows``, so that the next
    reading finds it learned and writes nothing again."""
    metrics = {"os_version": {"name": "Server 2022 Datacenter", "distro": "windows"}}
    hvm = records.vm(1, hvm=True)
    need = vm_need(hvm, [], records.nics(1), D16, XS8, guest_metrics=metrics)
    assert learned_now(hvm, need, 0, metrics) == {LEARNED_OS: "windows"}


# The disk backend: the one dom0 runs, unless [need] vbd_backend says

def test_detected_blkback_charges_a_ring_per_queue():
    """A 2-vCPU PV guest, 1 disk, 1 NIC on a 2-vCPU dom0 running blkback: 8, as measured (tapdisk3's
    default would say 7); an explicit [need] vbd_backend = tapdisk beats what was found."""
    host = HostFacts(dom0_vcpus=2, netback_max_queues=2, blkback_max_queues=2, vbd_backend="blkback")
    need = vm_need(records.vm(2), records.disks(1), records.nics(1), host, XS8)
    assert need.total == 8
    assert need.lines[2].why == "blkback: 2 rings, once PV drivers connect (the backend dom0 runs)"
    tapdisk = with_overrides(XS8, {"vbd_backend": "tapdisk"})
    assert total(records.vm(2), records.disks(1), records.nics(1), host=host, profile=tapdisk) == 7
    assert total(records.vm(2), records.disks(1), records.nics(1), host=host._replace(vbd_backend=None)) == 7
