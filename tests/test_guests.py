"""The simulator's table of what guests hold, against the real captures and the seed's figures."""

import ast
import os
import re

import pytest

from tests.pool import make_vm, wait_for
from xsguard.sim import guests

HERE = os.path.dirname(__file__)
PV_RUN = os.path.join(HERE, "fixtures", "xen417-pv-dom0-2vcpu")
QDISK_RUN = os.path.join(HERE, "fixtures", "xen417-pvh-qdisk-dom0-2vcpu")
ROOT = os.path.dirname(HERE)


def measured(run, case):
    """(domain type, vCPUs, disks, NICs, ports dom0 held for the guest once connected) of a captured case."""
    with open(os.path.join(run, "cases.txt")) as handle:
        spec = next(line.split() for line in handle if line.split()[:1] == [case])
    with open(os.path.join(run, "case-" + case, "domid")) as handle:
        domid = handle.read().strip()
    with open(os.path.join(run, "case-" + case, "after.lsevtchn0.txt")) as handle:
        held = sum(1 for line in handle if "Remote Domain %s," % domid in line)
    return spec[1], int(spec[2]), int(spec[3]), int(spec[4]), held


def backend_of(run):
    """dom0's netback and blkback max_queues, as the capture's backend-params.txt lists them."""
    with open(os.path.join(run, "backend-params.txt")) as handle:
        text = handle.read()
    net = re.search(r"xen_netback/parameters/max_queues:(\d+)", text)
    blk = re.search(r"xen_blkback/parameters/max_queues:(\d+)", text)
    assert net is not None and blk is not None, text
    return guests.Backend(int(net.group(1)), int(blk.group(1)))


def table_holds(stack, dtype, vcpus, disks, nics, asks=guests.Asks(), backend=guests.Backend(2, 2),
                firmware="bios", vbds=None):
    vbds = vbds if vbds is not None else [{"type": "Disk", "userdevice": str(i)} for i in range(disks)]
    vifs = [{"device": str(i)} for i in range(nics)]
    ports = len(guests.at_build(stack, dtype, vcpus, firmware))
    for _, bound in guests.at_connect(stack, dtype, vcpus, vbds, vifs, asks, backend):
        ports += len(bound)
    return ports


PV_CASES = ["v1d0n0", "v2d0n0", "v4d0n0", "v1d1n0", "v1d3n0", "v1d0n1", "v1d0n2", "v2d1n1", "v4d1n1",
            "v4d3n2", "k1", "k2", "k3"]


@pytest.mark.parametrize("case", PV_CASES)
def test_blkback_stack_matches_every_measured_pv_guest(case):
    """The xen417 stack's figure for each captured PV guest is what dom0 held for it."""
    dtype, vcpus, disks, nics, held = measured(PV_RUN, case)
    assert table_holds(guests.XEN417, dtype, vcpus, disks, nics, backend=backend_of(PV_RUN)) == held


def test_pvh_guest_holds_what_a_pv_guest_holds():
    """The captured PVH guest (2 vCPUs, 1 disk, 1 NIC) held what the table gives a PVH guest."""
    dtype, vcpus, disks, nics, held = measured(QDISK_RUN, "pvh2d1n1")
    assert dtype == "pvh"
    assert table_holds(guests.XEN417, dtype, vcpus, disks, nics, backend=backend_of(QDISK_RUN)) == held


def test_single_ring_disk_matches_the_qdisk_capture():
    """A 2-vCPU PV guest with one single-ring disk (qdisk, the nearest to tapdisk3) held 3: so does xs8's."""
    _, vcpus, disks, nics, held = measured(QDISK_RUN, "qdisk2v2")
    assert table_holds(guests.XS8, "pv", vcpus, disks, nics) == held == 3


@pytest.mark.parametrize("stack,seed", [(guests.XS62, 7), (guests.XS61, 6)])
def test_2013_stacks_hold_the_seeds_figures(stack, seed):
    """The seed post: an HVM guest with 3 disks, 1 NIC and 1 vCPU held 7 on XenServer 6.2, 6 before."""
    assert table_holds(stack, "hvm", 1, 3, 1) == seed


def test_2013_pv_guest_holds_its_console():
    """The seed post: one each for xenstore, the console (PV), the disk and the NIC."""
    assert table_holds(guests.XS62, "pv", 4, 1, 1) == 4


@pytest.mark.parametrize("dtype", ["pv", "pvh", "pv_in_pvh"])
def test_empty_cd_of_pv_family_binds_nothing(dtype):
    """xenopsd unplugs an empty CD of a non-HVM guest: only xenstore and console."""
    assert table_holds(guests.XS8, dtype, 1, 0, 0, vbds=[{"type": "CD", "userdevice": "3", "empty": True}]) == 2


def test_guest_asking_for_more_queues_gets_what_netback_grants():
    """A 1-vCPU guest asking 16 queues of a netback granting 16: 16 x 2 per NIC."""
    asks = guests.Asks(queues=16)
    assert table_holds(guests.XS8, "pv", 1, 1, 1, asks, guests.Backend(16, 16)) == 1 + 1 + 1 + 32
    assert table_holds(guests.XS8, "pv", 1, 1, 1, asks, guests.Backend(4, 4)) == 1 + 1 + 1 + 8


def test_guest_asking_for_more_rings_gets_them_from_blkback_only():
    """Rings asked of blkback are granted up to its max_queues; tapdisk3 serves one whatever."""
    asks = guests.Asks(rings=8)
    assert table_holds(guests.XEN417, "pv", 1, 2, 0, asks, guests.Backend(16, 4)) == 2 + 2 * 4
    assert table_holds(guests.XS8, "pv", 1, 2, 0, asks, guests.Backend(16, 4)) == 2 + 2


# Each kind of evidence a figure may name, and what it must then cite (None: nothing to cite).
EVIDENCE = {
    "measured": (r"(?<!not )\bmeasured\b", r"tests/fixtures/[\w./-]+\w|evtchn-accounting\.md, \d"),
    "read": (r"\bread\b", r"evtchn-accounting\.md, \d|xen-api \S+\.ml:\d+|Linux drivers/\S+\.c|xapi-project/\w+"),
    "seed": (r"\bseed\b", r'evtchn-accounting\.md, "The seed\'s figures"'),
    "UNVERIFIED": (r"\bUNVERIFIED\b", None),
    "none": (r"^none: ", None),
}


def evidence_problems(text):
    """What is wrong with one figure's evidence: it names no kind, or a kind without its citation,
    or a capture that is not there."""
    kinds = [kind for kind, (named, _) in EVIDENCE.items() if re.search(named, text)]
    if not kinds:
        return ["names no kind of evidence"]
    problems = ["says %s but cites nothing" % kind for kind, (_, cited) in EVIDENCE.items()
                if kind in kinds and cited is not None and not re.search(cited, text)]
    problems += ["no capture %s" % path for path in re.findall(r"tests/fixtures/[\w./-]+\w", text)
                 if not os.path.exists(os.path.join(ROOT, path))]
    return problems


def test_the_evidence_check_refuses_prose():
    """Prose, an uncited kind or a missing capture fails the check; a cited figure passes."""
    assert evidence_problems("1 per guest whatever else is going on") == ["names no kind of evidence"]
    assert evidence_problems("1 per guest, measured on a host") == ["says measured but cites nothing"]
    assert evidence_problems("1 per guest, read somewhere") == ["says read but cites nothing"]
    assert evidence_problems("measured: tests/fixtures/no-such-run/table.md") == [
        "no capture tests/fixtures/no-such-run/table.md"]
    assert evidence_problems("1, not measured: UNVERIFIED") == []
    assert evidence_problems("1, measured: %s/table.md" % guests.FIXTURES) == []


def test_every_figure_names_its_evidence():
    """Each stack gives evidence for each figure, each cited (a capture that exists, a source, the
    seed) or marked UNVERIFIED."""
    keys = {"xenstore", "console", "qemu", "varstored", "disk", "empty_cd", "emulated", "vif", "ctrl"}
    for stack in guests.STACKS.values():
        assert set(stack.evidence) == keys, stack.name
        for key, text in stack.evidence.items():
            assert evidence_problems(text) == [], (stack.name, key, text)


def test_hvm_figures_of_todays_stacks_are_unverified():
    """No HVM guest of XenServer 8 was captured: the console, QEMU and varstored figures of every
    stack that binds them for HVM say UNVERIFIED."""
    for stack in guests.STACKS.values():
        if stack.qemu_fixed or stack.console_for_hvm:
            for key in ("console", "qemu", "varstored"):
                assert "UNVERIFIED" in stack.evidence[key], (stack.name, key)


def test_simulator_never_imports_the_model():
    """No module of xsguard/sim imports xsguard's model (or anything of xsguard outside the simulator)."""
    sim_dir = os.path.join(ROOT, "xsguard", "sim")
    for name in sorted(os.listdir(sim_dir)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(sim_dir, name)) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                assert not (node.level >= 2 or target.startswith("xsguard")), (name, target)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("xsguard") for a in node.names), name


def test_set_guest_binds_what_the_model_does_not_expect(bare_api):
    """Through the simulator: a Linux HVM guest made to bind a control ring and 16 queues holds 1+1+2+1+32+1."""
    host = bare_api.sim.add_host("xs-a", {"vcpus": "16"})
    vm = make_vm(bare_api, "lnx", vcpus=1, hvm=True, disks=1, nics=1, affinity=host)
    bare_api.sim.set_guest(vm, {"queues": "16", "ctrl_ring": "true"})
    bare_api.VM.start(vm, False, False)
    domid = bare_api.VM.get_domid(vm)
    held = wait_for(lambda: int(bare_api.sim.get_dom0(host)["by_remote_domain"].get(domid, 0)) > 4 and
                    bare_api.sim.get_dom0(host)["by_remote_domain"][domid])
    assert int(held) == 1 + 1 + 2 + 1 + 16 * 2 + 1


def test_stack_is_set_per_host(bare_api):
    """sim.set_dom0 {"stack": "xs62"}: an HVM guest with 3 disks, 1 NIC, 1 vCPU holds the seed's 7."""
    host = bare_api.sim.add_host("xs-62", {"vcpus": "4", "abi": "2-level", "baseline_ports": "100"})
    bare_api.sim.set_dom0(host, {"stack": "xs62"})
    vm = make_vm(bare_api, "hvm", vcpus=1, hvm=True, disks=3, nics=1, affinity=host)
    bare_api.VM.start(vm, False, False)
    domid = bare_api.VM.get_domid(vm)
    held = wait_for(lambda: int(bare_api.sim.get_dom0(host)["by_remote_domain"].get(domid, 0)) >= 7 and
                    bare_api.sim.get_dom0(host)["by_remote_domain"][domid])
    assert int(held) == 7
    assert bare_api.sim.get_dom0(host)["ports_used"] == str(100 + 7)


def test_unknown_stack_is_refused(bare_api):
    """A stack the simulator does not know is an INVALID_VALUE naming it."""
    from tests.pool import failure

    host = bare_api.sim.add_host("xs-a", {})
    details = failure(bare_api.sim.set_dom0, host, {"stack": "xs99"})
    assert details[:2] == ["INVALID_VALUE", "stack"]
