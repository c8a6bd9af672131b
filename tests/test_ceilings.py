"""The two ceilings and where each came from."""

import pytest

from tests.fixtures_path import PV, read
from xsguard.model.ceilings import abi_from_boot_lines, abi_from_cmdline, irq_ceiling, port_ceiling


def test_real_boot_log():
    """The captured dom0 boot log gives FIFO (131071 ports) and NR_IRQS 524544 + 8196."""
    log = read(PV, "dom0-dmesg-boot.txt")
    ceiling = port_ceiling(None, log, None, None)
    assert (ceiling.name, ceiling.limit, ceiling.source) == ("xen_ports", 131071, "fifo ABI (kernel log)")
    assert irq_ceiling(None, log).limit == 524544 + 8196


def test_two_level_log_line():
    """``Using 2-level ABI`` means 4095 ports on a 64-bit dom0."""
    assert abi_from_boot_lines("[    1.0] xen:events: Using 2-level ABI\n") == "2-level"
    assert port_ceiling(None, "xen:events: Using 2-level ABI", None, None).limit == 4095


def test_last_boot_wins():
    """A log spanning reboots: the last ABI line is the running kernel's."""
    log = "xen:events: Using FIFO-based ABI\n...\nxen:events: Using 2-level ABI\n"
    assert abi_from_boot_lines(log) == "2-level"


def test_xenserver_irq_limit():
    """XenServer's raised NR_IRQS (33024) gives the 41220 ceiling the reference quotes."""
    assert irq_ceiling(None, "NR_IRQS: 33024, nr_irqs: 2048, preallocated irqs: 16").limit == 41220


@pytest.mark.parametrize("cmdline,version,abi", [
    ("root=/dev/sda1 xen.fifo_events=0", "4.17", "2-level"),
    ("root=/dev/sda1", "4.17", "fifo"),
    ("root=/dev/sda1", "4.3", "2-level"),
    ("root=/dev/sda1 xen.fifo_events=1", "4.13", "fifo"),
    ("root=/dev/sda1", None, None),
])
def test_inferred_when_boot_lines_are_gone(cmdline, version, abi):
    """Without the log line: the command line's xen.fifo_events=0, else FIFO from Xen 4.4."""
    assert abi_from_cmdline(cmdline, version) == abi


def test_inferred_source_is_stated():
    """An inferred limit says it was inferred."""
    ceiling = port_ceiling(None, "no abi line here", "xen.fifo_events=0", "4.17")
    assert ceiling.limit == 4095
    assert "inferred" in ceiling.source


def test_configured_beats_detected():
    """A configured number is used and said to be configured (e.g. a 32-bit dom0's 1023)."""
    ceiling = port_ceiling(1023, "xen:events: Using 2-level ABI", None, None)
    assert (ceiling.limit, ceiling.source) == (1023, "configured ([dom0] port_limit)")
    assert irq_ceiling(5000, "NR_IRQS: 33024, nr_irqs: 1").source == "configured ([dom0] irq_limit)"


def test_unknown_says_what_to_set():
    """Nothing to go on: the limit is unknown and the source names the key to set."""
    ports, irqs = port_ceiling(None, None, "", None), irq_ceiling(None, None)
    assert (ports.limit, ports.source) == (None, "unknown: set [dom0] port_limit")
    assert (irqs.limit, irqs.source) == (None, "unknown: set [dom0] irq_limit")
