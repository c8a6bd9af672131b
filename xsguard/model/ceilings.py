"""dom0's two ceilings, the Xen port limit and the Linux IRQ limit, and where each came from.

Pure: callers pass the text of the kernel's boot lines, ``/proc/cmdline`` and the Xen version.
"""

import re
from typing import NamedTuple, Optional

XEN_PORTS = "xen_ports"
LINUX_IRQS = "linux_irqs"

PORT_LIMITS = {"fifo": 131071, "2-level": 4095, "2-level-32": 1023}
IRQ_SPARSE_EXTRA = 8196  # IRQ_BITMAP_BITS = NR_IRQS + 8196 with CONFIG_SPARSE_IRQ

# where a limit came from
CONFIGURED = "configured"  # a number in xsguard.conf
BOOT_LOG = "boot_log"  # a line the kernel printed at boot
INFERRED = "inferred"  # the command line and the Xen version
UNKNOWN = "unknown"

_ABI_LINE = re.compile(r"xen:events: Using (FIFO-based|2-level) ABI")
_NR_IRQS = re.compile(r"NR_IRQS: ?(\d+), nr_irqs: ?(\d+)")
_CONFIG_KEY = {XEN_PORTS: "port_limit", LINUX_IRQS: "irq_limit"}


class Ceiling(NamedTuple):
    """A limit, or None when unknown, and where it came from."""

    name: str  # XEN_PORTS or LINUX_IRQS
    limit: Optional[int]
    origin: str  # CONFIGURED, BOOT_LOG, INFERRED or UNKNOWN
    basis: str = ""  # the ABI ("fifo", "2-level") or "NR_IRQS <n>"
    where: str = ""  # the file it was read from, and how

    @property
    def source(self) -> str:
        """One sentence: where the limit came from (what ``status`` shows)."""
        key = "[dom0] %s" % _CONFIG_KEY[self.name]
        if self.origin == CONFIGURED:
            return "configured (%s)" % key
        if self.origin == UNKNOWN:
            return "unknown: set %s" % key
        what = "%s ABI" % self.basis if self.name == XEN_PORTS else "%s + %d" % (self.basis, IRQ_SPARSE_EXTRA)
        return "%s (%s)" % (what, self.where)


def abi_from_boot_lines(text: str) -> Optional[str]:
    """The ABI the kernel chose, or None if its line is not in ``text``."""
    found = _ABI_LINE.findall(text)
    if not found:
        return None
    return "fifo" if found[-1] == "FIFO-based" else "2-level"


def nr_irqs_from_boot_lines(text: str) -> Optional[int]:
    """NR_IRQS as the kernel printed it at boot, or None."""
    found = _NR_IRQS.findall(text)
    return int(found[-1][0]) if found else None


def abi_from_cmdline(cmdline: str, xen_version: Optional[str]) -> Optional[str]:
    """Infer the ABI: ``xen.fifo_events=0`` forces 2-level; FIFO exists from Xen 4.4 on."""
    if fifo_disabled(cmdline):
        return "2-level"
    if xen_version is None:
        return None
    match = re.match(r"(\d+)\.(\d+)", xen_version)
    if not match:
        return None
    return "fifo" if (int(match.group(1)), int(match.group(2))) >= (4, 4) else "2-level"


def fifo_disabled(cmdline: str) -> bool:
    """``xen.fifo_events=0`` (or n, no, off, false) on dom0's kernel command line."""
    for word in cmdline.split():
        if word.startswith("xen.fifo_events="):
            return word.split("=", 1)[1].lower() in ("0", "n", "no", "off", "false")
    return False


def port_ceiling(
    configured: Optional[int],
    boot_lines: Optional[str],
    cmdline: Optional[str],
    xen_version: Optional[str],
    where: str = "kernel log",
) -> Ceiling:
    """The Xen port limit: the config's number, else the ABI from the boot lines, else inferred.

    A boot line that contradicts the command line (FIFO logged, ``xen.fifo_events=0`` set) is
    another boot's: it is not trusted.
    """
    if configured is not None:
        return Ceiling(XEN_PORTS, configured, CONFIGURED)
    abi = abi_from_boot_lines(boot_lines or "")
    if abi and not (abi == "fifo" and fifo_disabled(cmdline or "")):
        return Ceiling(XEN_PORTS, PORT_LIMITS[abi], BOOT_LOG, abi, where)
    abi = abi_from_cmdline(cmdline or "", xen_version)
    if abi:
        return Ceiling(XEN_PORTS, PORT_LIMITS[abi], INFERRED, abi,
                       "inferred from the kernel command line and Xen %s" % xen_version)
    return Ceiling(XEN_PORTS, None, UNKNOWN)


def irq_ceiling(configured: Optional[int], boot_lines: Optional[str], where: str = "kernel log") -> Ceiling:
    """The Linux IRQ limit: the config's number, else NR_IRQS + 8196 from the boot lines."""
    if configured is not None:
        return Ceiling(LINUX_IRQS, configured, CONFIGURED)
    nr_irqs = nr_irqs_from_boot_lines(boot_lines or "")
    if nr_irqs is not None:
        return Ceiling(LINUX_IRQS, nr_irqs + IRQ_SPARSE_EXTRA, BOOT_LOG, "NR_IRQS %d" % nr_irqs, where)
    return Ceiling(LINUX_IRQS, None, UNKNOWN)
