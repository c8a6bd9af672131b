"""One reading of this host's dom0: its ports, its IRQs, its ceilings and backend settings."""

import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from . import bootcache, ceilings, interrupts, lsevtchn, probes
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
    port, irq = read_ceilings(cfg)
    return Dom0(ports, irqs_used, irq_table, port, irq, probes.backend_params(d["sys_module"]), path)


def read_ceilings(cfg: Config) -> Tuple[Ceiling, Ceiling]:
    """The two ceilings: configured, else kept from this boot's kernel log, else read or inferred."""
    d = cfg.dom0
    if d["port_limit"] is not None and d["irq_limit"] is not None:
        return ceilings.port_ceiling(d["port_limit"], None, None, None), ceilings.irq_ceiling(d["irq_limit"], None)
    boot_id = (probes.read_optional(d["boot_id"]) or "").strip()
    cache = os.path.join(os.path.dirname(cfg.ledger["path"]) or ".", "ceilings.json")
    known = bootcache.load(cache, boot_id) if boot_id else {}
    log = None
    if any(d[key] is None and name not in known for key, name in (("port_limit", "xen_ports"),
                                                                      ("irq_limit", "linux_irqs"))):
        log = probes.read_kernel_log_head(d["kernel_log"])
    if d["port_limit"] is not None:
        port = ceilings.port_ceiling(d["port_limit"], None, None, None)
    elif "xen_ports" in known:
        port = bootcache.kept(known["xen_ports"])
    else:
        cmdline = probes.read_optional(d["cmdline"])
        port = ceilings.port_ceiling(None, log, cmdline, probes.xen_version(d["hypervisor"]))
    if d["irq_limit"] is not None:
        irq = ceilings.irq_ceiling(d["irq_limit"], None)
    elif "linux_irqs" in known:
        irq = bootcache.kept(known["linux_irqs"])
    else:
        irq = ceilings.irq_ceiling(None, log)
    fresh = {c.name: c for c in (port, irq) if bootcache.from_log(c) and c.name not in known}
    if boot_id and fresh:
        bootcache.save(cache, boot_id, dict(known, **fresh))
    return port, irq


def this_host_uuid(cfg: Config) -> str:
    """INSTALLATION_UUID from the inventory: the host this dom0 belongs to."""
    inventory = probes.read_inventory(cfg.dom0["inventory"])
    uuid = inventory.get("INSTALLATION_UUID")
    if not uuid:
        raise ProbeFailed("no INSTALLATION_UUID in %s" % cfg.dom0["inventory"], cfg.dom0["inventory"])
    return uuid
