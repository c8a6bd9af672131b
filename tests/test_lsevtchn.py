"""lsevtchn parsing: the real captures, and edge cases derived from lsevtchn.c's format."""

import glob
import os

import pytest

from tests.fixtures_path import PV, PVH, read
from xsguard.model.lsevtchn import parse, parse_lines


def _captures():
    return sorted(glob.glob(os.path.join(PV, "**", "*.lsevtchn0.txt"), recursive=True)
                  + glob.glob(os.path.join(PVH, "**", "*.lsevtchn0.txt"), recursive=True))


@pytest.mark.parametrize("path", _captures(), ids=lambda p: os.path.relpath(p, PV))
def test_every_capture_counts_as_captured(path):
    """Each capture parses whole, and the port count equals the captured ``.count``."""
    table = parse(read(path))
    assert table == parse_lines(read(path))  # the whole-text scan and the line-by-line count agree
    assert table.unparsed == []
    assert table.by_state.get("unrecognised", 0) == 0
    assert table.ports == int(read(path.replace(".lsevtchn0.txt", ".count")).strip())


def test_baseline_by_state():
    """dom0 alone: 6 VIRQs, 5 IPIs per vCPU, 10 physical IRQs, xenstored's 2 channels to dom0."""
    table = parse(read(PV, "01-baseline.lsevtchn0.txt"))
    assert table.ports == 28
    assert table.by_state == {"virq": 6, "ipi": 10, "connected": 2, "pirq": 10}
    assert table.by_remote_domain == {0: 2}


def test_three_guests_by_domain():
    """k1 (domid 11), k2 (12), k3 (13) running at once: 5, 8 and 2 ports."""
    table = parse(read(PV, "kept-all.lsevtchn0.txt"))
    assert table.ports == 43
    assert table.by_remote_domain == {0: 2, 11: 5, 12: 8, 13: 2}
    assert table.leaked([11, 12, 13]) == {}


def test_leaks_are_ports_of_dead_domains():
    """After k1 is destroyed, any port still naming domid 11 would be a leak; a dead k2 leaks 8."""
    table = parse(read(PV, "case-k1", "destroyed.lsevtchn0.txt"))
    assert 11 not in table.by_remote_domain
    assert table.leaked([13]) == {12: 8}


def test_waiting_connection():
    """Before xenstored runs, dom0's channel to itself waits for a connection."""
    table = parse(read(PV, "00-before-xen-daemons.lsevtchn0.txt"))
    assert table.by_state["waiting"] == 1
    assert table.by_remote_domain == {0: 1}


def test_all_states():
    """Every state lsevtchn.c prints is recognised."""
    text = "\n".join([
        "   1: VCPU 0: Interdomain (Connected) - Remote Domain 5, Port 3",
        "   2: VCPU 1: Interdomain (Waiting connection) - Remote Domain 7",
        "   3: VCPU 0: Physical IRQ 9",
        "   4: VCPU 0: Virtual IRQ 0",
        "   5: VCPU 3: IPI",
        "   6: VCPU 0: Unknown",
    ])
    table = parse(text)
    assert table == parse_lines(text)
    assert table.by_state == {s: 1 for s in ("connected", "waiting", "pirq", "virq", "ipi", "unknown")}
    assert table.leaked([5]) == {7: 1}


def test_empty_output():
    """No output: no ports (the probe turns this into an error)."""
    table = parse("")
    assert (table.ports, table.unparsed) == (0, [])


def test_garbage_is_reported_and_counted():
    """Lines without lsevtchn's prefix are kept, with their line numbers, and counted as ports."""
    table = parse("   1: VCPU 0: IPI\nSegmentation fault\n\n   2: VCPU 0: IPI\n")
    assert table.ports == 3
    assert table.unparsed == [(2, "Segmentation fault")]


def test_new_state_is_unrecognised_not_dropped():
    """A state a future Xen prints counts as a port, marked unrecognised."""
    table = parse("  12: VCPU 0: Interdomain (Bound) - Remote Domain 3\n  13: VCPU 0: Magic\n")
    assert table.ports == 2
    assert table.by_state == {"unrecognised": 2}
    assert table.by_remote_domain == {}


def test_truncated_last_line():
    """Output cut mid-line (a killed lsevtchn): the partial line still counts as a port."""
    text = read(PV, "kept-all.lsevtchn0.txt")
    cut = text[: text.rindex("Remote Domain 13") + 5]
    table = parse(cut)
    assert table.ports == 43
    assert table.by_state["unrecognised"] == 1


def test_fifo_sized_output():
    """131071 ports, the FIFO ABI's whole table, parse with the right counts."""
    lines = ["%4d: VCPU %d: Interdomain (Connected) - Remote Domain %d, Port %d" % (p, p % 16, 1 + p // 10, p % 10)
             for p in range(1, 131072)]
    table = parse("\n".join(lines) + "\n")
    assert table == parse_lines("\n".join(lines) + "\n")
    assert table.ports == 131071
    assert sum(table.by_remote_domain.values()) == 131071
