"""/proc/interrupts parsing: the real captures and derived layouts."""

import glob
import os

import pytest

from tests.fixtures_path import PV, PVH, read
from xsguard.model.interrupts import consumer_of, count, parse


def test_baseline_capture():
    """dom0 alone: 28 IRQ descriptors, all on Xen chips; architecture lines are not counted."""
    table = parse(read(PV, "01-baseline.interrupts.txt"))
    assert table.irqs == 28
    assert table.by_consumer["evtchn:oxenstored"] == 2
    assert table.by_consumer["timer"] == 2
    assert table.unparsed == []


def test_three_guests_consumers():
    """k1..k3 running: netback queues per domain, blkback rings, user-space binders."""
    table = parse(read(PV, "kept-all.interrupts.txt"))
    assert table.by_consumer["blkif-backend"] == 3
    assert table.by_consumer["evtchn:xenconsoled"] == 3
    assert table.by_consumer["evtchn:oxenstored"] == 2 + 3
    assert table.by_consumer["netback"] == 6


def _with_guests():
    found = glob.glob(os.path.join(PV, "**", "*.interrupts.txt"), recursive=True)
    found += glob.glob(os.path.join(PVH, "**", "*.interrupts.txt"), recursive=True)
    return sorted(p for p in found if "00-before" not in p)


@pytest.mark.parametrize("path", _with_guests(), ids=lambda p: os.path.relpath(p, os.path.dirname(PV)))
def test_guest_ports_appear_as_irqs(path):
    """In every capture, each port dom0 holds for a guest has its own IRQ line."""
    table = parse(read(path))
    ports = read(path.replace(".interrupts.txt", ".lsevtchn0.txt"))
    guest_ports = sum(1 for line in ports.splitlines() if "Remote Domain" in line and "Remote Domain 0," not in line)
    assert table.irqs - 28 == guest_ports
    assert count(read(path)) == table.irqs
    assert table.unparsed == []


def test_qemu_binder():
    """A qdisk disk shows QEMU's user-space binder."""
    table = parse(read(PVH, "case-qdisk2v2", "after.interrupts.txt"))
    assert any(k.startswith("evtchn:qemu") or k.startswith("evtchn:xen-qemu") for k in table.by_consumer)


def test_many_cpus_and_shared_actions():
    """Column count follows the header; comma-separated actions each count."""
    header = "".join("%11s" % ("CPU%d" % i) for i in range(64))
    counts = "".join("%11d" % 0 for _ in range(64))
    text = "    %s\n 100:%s  xen-dyn    -event     vif7.1-q3-tx, vif7.1-q3-rx\n" % (header, counts)
    text += "NMI:%s   Non-maskable interrupts\nERR:          0\n" % counts
    table = parse(text)
    assert table.irqs == 1
    assert table.by_consumer == {"netback": 2}


def test_short_line_is_reported():
    """A descriptor line too short for its CPU columns is counted and reported."""
    table = parse("           CPU0       CPU1\n  5:          0\n")
    assert table.irqs == 1
    assert table.unparsed == [(2, "  5:          0")]


def test_empty():
    """An empty file has no descriptors."""
    assert parse("").irqs == 0


@pytest.mark.parametrize("action,consumer", [
    ("vif12.0-q1-rx", "netback"), ("timer0", "timer"), ("callfuncsingle15", "callfuncsingle"),
    ("evtchn:tapdisk", "evtchn:tapdisk"), ("blkif-backend", "blkif-backend"), ("eth0-TxRx-3", "eth0-TxRx-*"),
    ("virtio0-req.1", "virtio0-req.*"), ("i8042", "i8042"), ("xen-netback-ctrl", "xen-netback-ctrl"),
])
def test_consumer_grouping(action, consumer):
    """Per-domain and per-CPU names are grouped; others kept."""
    assert consumer_of(action) == consumer


def test_count_from_the_first_line_on():
    """``count`` finds a numbered line at the very start of the text too, and counts neither
    architecture lines nor a number later in a line."""
    text = ("  7:  0  xen-dyn  -event  evtchn:xenstored\n"
            "NMI:  0  Non-maskable interrupts\n"
            " 12:  3  xen-dyn  -event  x 9:\n")
    assert count(text) == 2
    assert count(text.replace("  7:", "NMI:")) == 1
