"""The two ceilings and where each came from."""

import pytest

from tests.fixtures_path import PV, read
from xsguard.model.ceilings import (
    LINUX_IRQS,
    XEN_PORTS,
    BootScan,
    abi_from_boot_lines,
    abi_from_cmdline,
    irq_ceiling,
    kernel_message,
    port_ceiling,
)


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


def test_the_real_boot_log_scanned_in_chunks():
    """The captured dom0 boot log (dmesg's format), fed a few lines at a time: its boot marker,
    then its NR_IRQS and ABI lines, exactly as the kernel printed them."""
    lines = read(PV, "dom0-dmesg-boot.txt").encode().splitlines(True)
    scan = BootScan([XEN_PORTS, LINUX_IRQS])
    for at in range(0, len(lines), 7):
        scan.feed(b"".join(lines[at:at + 7]))
    assert scan.tail is not None and scan.tail.marker is not None
    assert scan.tail.marker.startswith(b"[    0.000000] Linux version 6.1.0-56-amd64 ")
    assert scan.tail.lines == {LINUX_IRQS: b"[    2.742894] NR_IRQS: 524544, nr_irqs: 440, preallocated irqs: 16",
                               XEN_PORTS: b"[    2.750855] xen:events: Using FIFO-based ABI"}


def test_the_first_line_after_the_last_boot_marker_wins():
    """A log spanning reboots: this boot's lines are the first of each kind after the last
    ``Linux version`` line; a later line of the same kind in this boot does not count."""
    log = (b"kernel: [    0.000000] Linux version 4.19.0+1\nkernel: [    2.7] xen:events: Using FIFO-based ABI\n"
           b"kernel: [    2.7] NR_IRQS: 524544, nr_irqs: 440\n"
           b"kernel: [    0.000000] Linux version 4.19.0+1\nkernel: [    2.7] NR_IRQS: 33024, nr_irqs: 2048\n"
           b"kernel: [    2.8] xen:events: Using 2-level ABI\nkernel: [ 9000.0] NR_IRQS: 999999, nr_irqs: 1\n"
           b"kernel: [ 9001.0] xen:events: Using FIFO-based ABI\n")
    scan = BootScan([XEN_PORTS, LINUX_IRQS])
    scan.feed(log)
    assert scan.tail is not None
    assert scan.tail.lines == {LINUX_IRQS: b"kernel: [    2.7] NR_IRQS: 33024, nr_irqs: 2048",
                               XEN_PORTS: b"kernel: [    2.8] xen:events: Using 2-level ABI"}
    assert irq_ceiling(None, scan.tail.lines[LINUX_IRQS].decode()).limit == 41220


def test_only_a_line_whose_message_begins_with_the_words_counts():
    """A line that mentions ``NR_IRQS:`` or ``Linux version`` inside another message is neither a
    boot line nor a boot marker, however many times it mentions them."""
    log = (b"Nov 26 08:02:11 xs-a kernel: [    0.000000] Linux version 4.19.0+1\n"
           b"Nov 26 08:02:11 xs-a kernel: [    1.0] echo NR_IRQS: 999999, nr_irqs: 1 Linux version 5\n"
           + b"Nov 26 08:02:11 xs-a kernel: [    1.1] " + b"NR_IRQS: " * 50 + b"\n"
           b"Nov 26 08:02:11 xs-a kernel: [    2.7] NR_IRQS: 33024, nr_irqs: 2048\n")
    scan = BootScan([LINUX_IRQS])
    scan.feed(log)
    assert scan.tail is not None and scan.tail.marker is not None
    assert scan.tail.marker.endswith(b"Linux version 4.19.0+1")
    assert scan.tail.lines == {LINUX_IRQS: b"Nov 26 08:02:11 xs-a kernel: [    2.7] NR_IRQS: 33024, nr_irqs: 2048"}


@pytest.mark.parametrize("record,message", [
    (b"6,181,2742894,-;NR_IRQS: 33024, nr_irqs: 2048", b"NR_IRQS: 33024, nr_irqs: 2048"),
    (b"4,2,2750855,c,caller=T1;xen:events: x", b"xen:events: x"),
    (b"14,300,9000000,-;NR_IRQS: 999999, nr_irqs: 1", None),  # a process's write: facility user
    (b"8,301,9000001,-;NR_IRQS: 999999, nr_irqs: 1", None),  # a process writing <0> gets facility user too
    (b"30,302,9000002,-;Linux version 9", None),  # facility daemon
    (b" SUBSYSTEM=xen", None),  # a continuation line
])
def test_ring_records_count_only_the_kernels_own(record, message):
    """Of /dev/kmsg's records only the kernel's (facility 0) have a message; others and
    continuation lines have none."""
    assert kernel_message(record, ring=True) == message


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
