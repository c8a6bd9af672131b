"""How many more VMs of a shape fit: the pure arithmetic (model/capacity.py)."""

import pytest

from xsguard.model import capacity
from xsguard.model.ceilings import LINUX_IRQS, XEN_PORTS
from xsguard.model.need import HostFacts, vm_need
from xsguard.model.profiles import PROFILES


def rooms(port_limit=4095, ports_used=100, irq_limit=41220, irqs_used=500, promised=0, margin=0):
    return [capacity.Room(XEN_PORTS, port_limit, ports_used, promised, margin),
            capacity.Room(LINUX_IRQS, irq_limit, irqs_used, promised, margin)]


def test_how_many_is_the_tightest_ceilings_free_over_the_need():
    """(4095 - 100) // 7 = 570 under the ports; promised and margin count as at a start."""
    assert capacity.how_many(rooms(), 7) == (570, XEN_PORTS)
    assert capacity.how_many(rooms(promised=10, margin=64), 7) == ((4095 - 100 - 10 - 64) // 7, XEN_PORTS)
    assert capacity.how_many(rooms(port_limit=131071, irqs_used=41000), 7) == ((41220 - 41000) // 7, LINUX_IRQS)


def test_full_and_unknown_ceilings():
    """A ceiling already past its limit admits none (not a negative count); an unknown one is not
    checked; with none known, the answer is unknown; a need of 0 is never divided by."""
    assert capacity.how_many(rooms(ports_used=5000), 7) == (0, XEN_PORTS)
    assert capacity.how_many(rooms(port_limit=None), 7) == ((41220 - 500) // 7, LINUX_IRQS)
    assert capacity.how_many(rooms(port_limit=None, irq_limit=None), 7) == (None, None)
    assert capacity.how_many(rooms(), 0) == (None, None)


def test_remedies_fifo_margin_and_dom0_vcpus():
    """FIFO for a 2-level port limit (then the IRQs bind), no margin where there is one, and more dom0
    vCPUs only when it changes the need; none applies to a FIFO host with no margin."""
    found = {r["remedy"]: r for r in capacity.remedies(rooms(margin=64), 7, more_vcpus=(8, 9))}
    assert (found["fifo"]["fits"], found["fifo"]["ceiling"]) == ((41220 - 500 - 64) // 7, LINUX_IRQS)
    assert (found["margin"]["fits"], found["margin"]["ceiling"]) == (570, XEN_PORTS)
    assert (found["dom0_vcpus"]["need"], found["dom0_vcpus"]["fits"]) == (9, (4095 - 100 - 64) // 9)
    assert capacity.remedies(rooms(port_limit=131071), 7, more_vcpus=(8, 7)) == []


def test_shape_records_give_the_seeds_need():
    """A 1-vCPU HVM shape of 3 disks and 1 VIF needs 7 on the 6.2 profile and 6 on 6.1 (the 2013 post)."""
    vm, vbds, vifs = capacity.shape(1, 3, 1, True, False).records()
    facts = HostFacts(dom0_vcpus=4)
    assert vm_need(vm, vbds, vifs, facts, PROFILES["xs62"]).total == 7
    assert vm_need(vm, vbds, vifs, facts, PROFILES["xs61"]).total == 6


def test_shape_of_a_vm_and_bad_shapes():
    """--like reads vCPUs, disks (not CDs), VIFs and firmware; a shape out of range is refused."""
    vm = {"VCPUs_max": "4", "HVM_boot_params": {"firmware": "uefi"}}
    vbds = [{"type": "Disk"}, {"type": "CD"}, {"type": "Disk"}]
    assert capacity.shape_of(vm, vbds, [{}], "hvm") == capacity.Shape(4, 2, 1, True, True)
    assert capacity.shape_of(vm, vbds, [], "pv") == capacity.Shape(4, 2, 0, False, False)
    for args in ((0, 1, 1, False, False), (1, 256, 1, False, False), (1, 1, 65, False, False), (1, 1, 1, False, True)):
        with pytest.raises(ValueError):
            capacity.shape(*args)


def test_total_counts_the_hosts_that_answered():
    """The pool's total adds the hosts with a count; one that did not answer adds nothing."""
    assert capacity.total([570, 153, None]) == 723
