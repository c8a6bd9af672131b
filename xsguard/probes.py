"""dom0's probes: run lsevtchn, read /proc and /sys files, and what they say together.

Thin: the parsing and the arithmetic live in ``xsguard.model``.
"""

import os
import signal
import subprocess

from . import bootcache, state
from .config import LSEVTCHN_CANDIDATES, Config
from .deadline import Deadline
from .errors import ProbeFailed
from .model import ceilings, interrupts, lsevtchn
from .model.ceilings import BOOT_LOG, LINUX_IRQS, XEN_PORTS, Ceiling
from .model.interrupts import IrqTable
from .model.lsevtchn import PortTable
from .model.profiles import TAPDISK, BackendSeen, storage_backend_found
from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple


def find_lsevtchn(configured: str, candidates: "Sequence[str]" = LSEVTCHN_CANDIDATES) -> str:
    """The lsevtchn to run: the configured path, or the first one found in Xen's usual places."""
    if configured != "auto":
        if not os.access(configured, os.X_OK):
            raise ProbeFailed("lsevtchn not found or not executable at %s ([dom0] lsevtchn)" % configured, configured)
        return configured
    for pattern in candidates:
        if "*" in pattern:
            import glob  # only when no plain candidate has it (glob costs every hook its import)

            directories = sorted(glob.glob(pattern), reverse=True)
        else:
            directories = [pattern]
        for directory in directories:
            path = os.path.join(directory, "lsevtchn")
            if os.access(path, os.X_OK):
                return path
    raise ProbeFailed("lsevtchn not found in %s: install Xen's tools or set [dom0] lsevtchn" % ", ".join(candidates))


KILLED_GRACE = 0.5  # seconds to collect a killed lsevtchn's last output


def run_lsevtchn(path: str, timeout: float, domid: int = 0) -> str:
    """The output of ``lsevtchn <domid>``, or ProbeFailed if it fails, hangs or is killed.

    It runs in a process group of its own, killed whole at the timeout: a child of it that
    keeps its stdout open cannot hold the caller past the timeout.
    """
    try:
        proc = subprocess.Popen(
            [path, str(domid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise ProbeFailed("cannot run %s: %s" % (path, exc.strerror or exc), path)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        _kill_group(proc)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ProbeFailed("%s did not answer within %.1fs" % (path, timeout), path)
        raise
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        raise ProbeFailed(
            "%s exited with status %d%s" % (path, proc.returncode, ": " + detail[-1] if detail else ""),
            path,
        )
    return out.decode("utf-8", "replace")


def _kill_group(proc: "subprocess.Popen[bytes]") -> None:
    """SIGKILL lsevtchn's whole process group and reap it, without waiting on its pipes for long."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.communicate(timeout=KILLED_GRACE)
    except subprocess.TimeoutExpired:  # a descendant left the group and keeps the pipes open
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()


def read_text(path: str, what: str) -> str:
    """A file's whole text, or ProbeFailed naming what it is for."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        raise ProbeFailed("cannot read %s (%s): %s" % (what, path, exc.strerror or exc), path)


def read_optional(path: str) -> "Optional[str]":
    """A file's text, or None if it is absent or unreadable (for facts that have a fallback)."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def xen_version(hypervisor_dir: str) -> "Optional[str]":
    """``major.minor`` from /sys/hypervisor/version, or None."""
    major = read_optional(os.path.join(hypervisor_dir, "version", "major"))
    minor = read_optional(os.path.join(hypervisor_dir, "version", "minor"))
    if major is None or minor is None:
        return None
    return "%s.%s" % (major.strip(), minor.strip())


VBD_BACKEND = "vbd_backend"  # backend_params' key for the disk backend found (absent: none)
VBD_BACKEND_EVIDENCE = "vbd_backend.evidence"


def storage_seen(sys_module: str, irq_text: "Optional[str]") -> BackendSeen:
    """What dom0 shows of its disk backends: IRQs of ``irq_text`` (/proc/interrupts, when read
    already), and sysfs beside ``sys_module``: three directory listings, no file read."""
    sys_root = os.path.dirname(sys_module.rstrip("/"))
    irqs = irq_text or ""
    return BackendSeen(
        blkback_rings=irqs.count(" blkif-backend"),
        blkback_devices=_entries(os.path.join(sys_root, "bus", "xen-backend", "devices"), "vbd-"),
        tapdisk_rings=irqs.count(" evtchn:tapdisk"),
        tapdisk_minors=_entries(os.path.join(sys_root, "class", "blktap2"), "blktap"),
        blkback_loaded=os.path.isdir(os.path.join(sys_module, "xen_blkback")),
        blktap_loaded=os.path.isdir(os.path.join(sys_module, "blktap")),
    )


def _entries(directory: str, prefix: str) -> int:
    """How many names in ``directory`` begin with ``prefix`` (none if it cannot be listed)."""
    try:
        return sum(1 for name in os.listdir(directory) if name.startswith(prefix))
    except OSError:
        return 0


def storage_report(backend: "Dict[str, str]", configured: "Optional[str]") -> "Dict[str, Any]":
    """``status``'s ``storage_backend``: the backend charged, the one found and what showed it."""
    found = backend.get(VBD_BACKEND)
    return {"charged": configured or found or TAPDISK, "found": found,
            "evidence": backend.get(VBD_BACKEND_EVIDENCE, ""), "configured": configured}


def backend_params(sys_module: str, irq_text: "Optional[str]" = None) -> "Dict[str, str]":
    """netback's and blkback's parameters that set queue counts, keyed ``module.param``, and the
    disk backend found running (``vbd_backend``, with what showed it)."""
    found, evidence = storage_backend_found(storage_seen(sys_module, irq_text))
    params = {VBD_BACKEND_EVIDENCE: evidence}
    if found is not None:
        params[VBD_BACKEND] = found
    for module, name in (
        ("xen_netback", "max_queues"),
        ("xen_netback", "separate_tx_rx_irq"),
        ("xen_blkback", "max_queues"),
    ):
        text = read_optional(os.path.join(sys_module, module, "parameters", name))
        if text is not None:
            params["%s.%s" % (module, name)] = text.strip()
    return params


def read_inventory(path: str) -> "Dict[str, str]":
    """/etc/xensource-inventory as a dict (``KEY='value'`` lines)."""
    inventory = {}
    for line in read_text(path, "the host inventory").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            inventory[key.strip()] = value.strip().strip("'\"")
    return inventory


class Dom0(NamedTuple):
    """dom0's state as read now."""

    ports: PortTable
    irqs_used: int
    irq_table: "Optional[IrqTable]"  # by consumer, when read in ``detail``
    port_ceiling: Ceiling
    irq_ceiling: Ceiling
    backend: "Dict[str, str]"
    lsevtchn: str

    @property
    def ceilings(self) -> "List[Ceiling]":
        return [self.port_ceiling, self.irq_ceiling]

    @property
    def used(self) -> "Dict[str, int]":
        return {XEN_PORTS: self.ports.ports, LINUX_IRQS: self.irqs_used}


def read_dom0(cfg: Config, deadline: Deadline, detail: bool = False, patient: bool = False) -> Dom0:
    """Run lsevtchn and read the files the config names; ProbeFailed on what is unusable.

    ``detail`` also breaks the IRQs down by consumer (for ``status``).
    """
    d = cfg.dom0
    path = find_lsevtchn(d.lsevtchn)
    text = run_lsevtchn(path, deadline.cap(d.probe_timeout))
    ports = lsevtchn.parse(text)
    if ports.ports == 0 or ports.ports == len(ports.unparsed):
        first = ports.unparsed[0][1][:80] if ports.unparsed else "(nothing)"
        raise ProbeFailed("%s printed no port lines: %r" % (path, first), path)
    irq_text = read_text(d.proc_interrupts, "dom0's IRQ table")
    irq_table = interrupts.parse(irq_text) if detail else None
    irqs_used = irq_table.irqs if irq_table else interrupts.count(irq_text)
    if irqs_used == 0:
        raise ProbeFailed("%s lists no IRQ: %r" % (d.proc_interrupts, irq_text[:80]), d.proc_interrupts)
    port, irq = read_ceilings(cfg, deadline, patient)
    return Dom0(ports, irqs_used, irq_table, port, irq, backend_params(d.sys_module, irq_text), path)


def held_by_domain(cfg: Config, deadline: Deadline, domid: int) -> int:
    """The ports dom0 holds for one guest domain now (its interdomain channels, from lsevtchn)."""
    path = find_lsevtchn(cfg.dom0.lsevtchn)
    return lsevtchn.parse(run_lsevtchn(path, deadline.cap(cfg.dom0.probe_timeout))).by_remote_domain.get(domid, 0)


def read_ceilings(cfg: Config, deadline: "Optional[Deadline]" = None,
                  patient: bool = False) -> "Tuple[Ceiling, Ceiling]":
    """The two ceilings: configured, else kept from this boot's first reading, else this boot's
    line in the kernel log, its rotations or the ring buffer (``bootlog``, within its share of
    ``deadline``), else inferred. What a search found, or did not, is kept for the boot.

    ``patient``: a caller nobody waits on (xsguard-rrdd at start, ``status``) searches with its own
    time (``bootlog.PATIENT_SECONDS``), and searches again where a hook's search was cut by its time."""
    d = cfg.dom0
    if d.port_limit is not None and d.irq_limit is not None:
        return ceilings.port_ceiling(d.port_limit, None, None, None), ceilings.irq_ceiling(d.irq_limit, None)
    boot_id = state.boot_id(cfg)
    cache = state.path(cfg, state.CEILINGS)
    cached = bootcache.load(cache, boot_id)
    sources = bootcache.searched(d.kernel_log, d.kernel_ring)
    wanted = [name for limit, name in ((d.port_limit, XEN_PORTS), (d.irq_limit, LINUX_IRQS))
              if limit is None and name not in cached.ceilings
              and (cached.unknown.get(name, bootcache.Unknown("", "")).sources != sources
                   or (patient and cached.unknown[name].retry))]
    lines = {name: ("", cached.unknown[name].where) for name in cached.unknown}  # (boot line, where) by ceiling
    if wanted:
        from . import bootlog  # only a search needs it: once a boot

        search = bootlog.search(d.kernel_log, d.kernel_ring, d.proc_stat, wanted,
                                bootlog.seconds_for(deadline, patient))
        lines.update({name: search.lines.get(name, ("", search.where)) for name in wanted})

    if d.port_limit is not None:
        port = ceilings.port_ceiling(d.port_limit, None, None, None)
    elif XEN_PORTS in cached.ceilings:
        port = bootcache.from_cache(cached.ceilings[XEN_PORTS])
    else:
        line, where = lines[XEN_PORTS]
        port = ceilings.port_ceiling(None, line, read_optional(d.cmdline), xen_version(d.hypervisor), where)
    if d.irq_limit is not None:
        irq = ceilings.irq_ceiling(d.irq_limit, None)
    elif LINUX_IRQS in cached.ceilings:
        irq = bootcache.from_cache(cached.ceilings[LINUX_IRQS])
    else:
        line, where = lines[LINUX_IRQS]
        irq = ceilings.irq_ceiling(None, line, where)
    if wanted:  # kept whatever it found: a search that fell short would fall short again
        fresh = {c.name: c for c in (port, irq) if c.origin == BOOT_LOG and c.name in wanted}
        vain = {name: bootcache.Unknown(sources, search.where, search.timed and not patient)
                for name in wanted if name not in fresh}
        bootcache.save(cache, boot_id, bootcache.Cached(dict(cached.ceilings, **fresh), dict(cached.unknown, **vain)))
    return port, irq


def this_host_uuid(cfg: Config) -> str:
    """INSTALLATION_UUID from the inventory: the host this dom0 belongs to."""
    inventory = read_inventory(cfg.dom0.inventory)
    uuid = inventory.get("INSTALLATION_UUID")
    if not uuid:
        raise ProbeFailed("no INSTALLATION_UUID in %s" % cfg.dom0.inventory, cfg.dom0.inventory)
    return uuid
