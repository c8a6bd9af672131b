"""One reading of this host's dom0: its ports, its IRQs, its ceilings and backend settings."""

from typing import Dict, List, NamedTuple, Optional

from . import ceilings, interrupts, lsevtchn, probes
from .ceilings import Ceiling
from .config import Config
from .deadline import Deadline
from .errors import ProbeFailed
from .interrupts import IrqTable
from .lsevtchn import PortTable


class Dom0(NamedTuple):
    """dom0's state as read now."""

    ports: PortTable
    irqs_used: int
    irq_table: Optional[IrqTable]  # by chip and consumer, when read in ``detail``
    port_ceiling: Ceiling
    irq_ceiling: Ceiling
    backend: Dict[str, str]
    lsevtchn: str

    @property
    def ceilings(self) -> List[Ceiling]:
        return [self.port_ceiling, self.irq_ceiling]

    @property
    def used(self) -> Dict[str, int]:
        return {"xen_ports": self.ports.ports, "linux_irqs": self.irqs_used}


def read(cfg: Config, deadline: Deadline, detail: bool = False) -> Dom0:
    """Run lsevtchn and read the files the config names; ProbeFailed on what is unusable.

    ``detail`` also breaks the IRQs down by chip and consumer (for ``status``).
    """
    d = cfg.dom0
    path = probes.find_lsevtchn(d["lsevtchn"])
    text = probes.run_lsevtchn(path, deadline.cap(d["probe_timeout"]))
    ports = lsevtchn.parse(text)
    if ports.ports == 0 or ports.ports == len(ports.unparsed):
        first = ports.unparsed[0][1][:80] if ports.unparsed else "(nothing)"
        raise ProbeFailed("%s printed no port lines: %r" % (path, first), path)
    irq_text = probes.read_text(d["proc_interrupts"], "dom0's IRQ table")
    irq_table = interrupts.parse(irq_text) if detail else None
    irqs_used = irq_table.irqs if irq_table else interrupts.count(irq_text)
    log = None
    if d["port_limit"] is None or d["irq_limit"] is None:
        log = probes.read_kernel_log_head(d["kernel_log"])
    if d["port_limit"] is None:
        cmdline = probes.read_optional(d["cmdline"])
        port = ceilings.port_ceiling(None, log, cmdline, probes.xen_version(d["hypervisor"]))
    else:
        port = ceilings.port_ceiling(d["port_limit"], None, None, None)
    irq = ceilings.irq_ceiling(d["irq_limit"], log)
    return Dom0(ports, irqs_used, irq_table, port, irq, probes.backend_params(d["sys_module"]), path)


def this_host_uuid(cfg: Config) -> str:
    """INSTALLATION_UUID from the inventory: the host this dom0 belongs to."""
    inventory = probes.read_inventory(cfg.dom0["inventory"])
    uuid = inventory.get("INSTALLATION_UUID")
    if not uuid:
        raise ProbeFailed("no INSTALLATION_UUID in %s" % cfg.dom0["inventory"], cfg.dom0["inventory"])
    return uuid
