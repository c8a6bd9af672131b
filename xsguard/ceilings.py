"""dom0's two ceilings, the Xen port limit and the Linux IRQ limit, and where each came from.

Pure: callers pass the text of the kernel log, ``/proc/cmdline`` and the Xen version.
"""

import re
from typing import NamedTuple, Optional

PORT_LIMITS = {"fifo": 131071, "2-level": 4095, "2-level-32": 1023}
IRQ_SPARSE_EXTRA = 8196  # IRQ_BITMAP_BITS = NR_IRQS + 8196 with CONFIG_SPARSE_IRQ

_ABI_LINE = re.compile(r"xen:events: Using (FIFO-based|2-level) ABI")
_NR_IRQS = re.compile(r"NR_IRQS: ?(\d+), nr_irqs: ?(\d+)")


class Ceiling(NamedTuple):
    """A limit, or None when unknown, and a sentence saying where it came from."""

    name: str  # "xen_ports" or "linux_irqs"
    limit: Optional[int]
    source: str


def abi_from_kernel_log(text: str) -> Optional[str]:
    """The ABI of the last boot in the log, or None if its boot lines are gone."""
    found = _ABI_LINE.findall(text)
    if not found:
        return None
    return "fifo" if found[-1] == "FIFO-based" else "2-level"


def abi_from_cmdline(cmdline: str, xen_version: Optional[str]) -> Optional[str]:
    """Infer the ABI: ``xen.fifo_events=0`` forces 2-level; FIFO exists from Xen 4.4 on."""
    for word in cmdline.split():
        if word.startswith("xen.fifo_events="):
            value = word.split("=", 1)[1].lower()
            if value in ("0", "n", "no", "off", "false"):
                return "2-level"
    if xen_version is None:
        return None
    match = re.match(r"(\d+)\.(\d+)", xen_version)
    if not match:
        return None
    return "fifo" if (int(match.group(1)), int(match.group(2))) >= (4, 4) else "2-level"


def port_ceiling(
    configured: Optional[int],
    kernel_log: Optional[str],
    cmdline: Optional[str],
    xen_version: Optional[str],
) -> Ceiling:
    """The Xen port limit: the config's number, else the ABI from the log, else inferred."""
    if configured is not None:
        return Ceiling("xen_ports", configured, "configured ([dom0] port_limit)")
    if kernel_log:
        abi = abi_from_kernel_log(kernel_log)
        if abi:
            return Ceiling("xen_ports", PORT_LIMITS[abi], "%s ABI (kernel log)" % abi)
    abi = abi_from_cmdline(cmdline or "", xen_version)
    if abi:
        return Ceiling(
            "xen_ports",
            PORT_LIMITS[abi],
            "%s ABI (inferred from the kernel command line and Xen %s)" % (abi, xen_version),
        )
    return Ceiling("xen_ports", None, "unknown: set [dom0] port_limit")


def irq_ceiling(configured: Optional[int], kernel_log: Optional[str]) -> Ceiling:
    """The Linux IRQ limit: the config's number, else NR_IRQS + 8196 from the kernel log."""
    if configured is not None:
        return Ceiling("linux_irqs", configured, "configured ([dom0] irq_limit)")
    found = _NR_IRQS.findall(kernel_log or "")
    if found:
        nr_irqs = int(found[-1][0])
        return Ceiling(
            "linux_irqs",
            nr_irqs + IRQ_SPARSE_EXTRA,
            "NR_IRQS %d + %d (kernel log)" % (nr_irqs, IRQ_SPARSE_EXTRA),
        )
    return Ceiling("linux_irqs", None, "unknown: set [dom0] irq_limit")
