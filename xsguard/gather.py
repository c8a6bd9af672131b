"""Gather: what a decision reads before the ledger's lock, where slow I/O may happen.

The subject (the VM, its devices, the host), dom0 as read now, a snapshot of the ledger
and its pending charges, and the needs of the VMs the snapshot names, asked of xapi.
Nothing here is written.
"""

from typing import Dict, FrozenSet, List, NamedTuple, Optional, Set

from . import ledger, probes, state
from .config import Config
from .deadline import Deadline
from .model import need as need_model
from .model.charging import HOW_REBUILT, Entry
from .model.need import HostFacts, Need, as_int
from .model.profiles import PROFILES, Profile, with_overrides
from .probes import Dom0
from .xapi import Record, Xapi, any_of


def profile_of(cfg: Config) -> Profile:
    """The configured profile with the site's ``[need]`` overrides (every key is a profile field)."""
    return with_overrides(PROFILES[cfg.policy["profile"]], cfg.need)


def host_facts(control_domain: Optional[Record], backend: Dict[str, str]) -> HostFacts:
    """dom0's vCPUs from its xapi record (never from the machine this runs on) and backend caps."""
    vcpus = 1
    if control_domain:
        vcpus = as_int(control_domain.get("VCPUs_at_startup") or control_domain.get("VCPUs_max", 1), "VCPUs")

    def number(key: str) -> Optional[int]:
        text = backend.get(key, "")
        return int(text) if text.isdigit() else None

    split = backend.get("xen_netback.separate_tx_rx_irq")
    return HostFacts(
        dom0_vcpus=max(vcpus, 1),
        netback_max_queues=number("xen_netback.max_queues"),
        netback_split=None if split is None else split.upper() in ("Y", "1"),
        blkback_max_queues=number("xen_blkback.max_queues"),
    )


class Subject(NamedTuple):
    """The VM being decided, its devices, and the host it would run on, as xapi described them."""

    vm_ref: str
    vm: Record
    host_ref: str
    host: Record
    control_domain: Optional[Record]
    vbds: List[Record]
    vifs: List[Record]
    vgpus: List[Record]
    guest_metrics: Optional[Record] = None  # VM_guest_metrics, when the VM has one

    @property
    def vm_uuid(self) -> str:
        return str(self.vm.get("uuid", ""))

    @property
    def host_name(self) -> str:
        return str(self.host.get("name_label", ""))


class Survey(NamedTuple):
    """dom0 as read now, then what xapi says runs or starts on the host, and when it was asked."""

    dom0: Dom0
    on_host: Dict[str, Record]  # by ref, control domain included
    asked_at: float  # CLOCK_MONOTONIC
    asked: Optional[FrozenSet[str]] = None  # the uuids xapi was asked about; None: every VM on the host
    host_ref: str = ""


def read_subject(cfg: Config, api: Xapi, vm_key: str, host_uuid: Optional[str] = None) -> Subject:
    """The host, the VM with dom0's record, and the VM's devices: four calls, one more for vGPUs and one
    for guest metrics when the VM has them."""
    host_ref, host = api.host_by_uuid(host_uuid or probes.this_host_uuid(cfg))
    vm_ref, vm, control = api.vm_and_control_domain(vm_key, host_ref)
    need_model.refuse_non_candidate(vm)
    vbds, vifs, vgpus = api.devices(vm_ref, vm)
    return Subject(vm_ref, vm, host_ref, host, control, vbds, vifs, vgpus, api.guest_metrics(vm))


def compute_need(cfg: Config, subject: Subject, backend: Dict[str, str]) -> Need:
    facts = host_facts(subject.control_domain, backend)
    return need_model.vm_need(subject.vm, subject.vbds, subject.vifs, facts, profile_of(cfg), subject.vgpus,
                              subject.guest_metrics)


def with_peak(need: Need, previous: Optional[Entry]) -> Need:
    """The need raised to what dom0 was seen holding for the VM's last domain here, if more:
    a guest that took more than the model predicts is never counted at the prediction again."""
    if previous is None or previous.peak <= need.total:
        return need
    extra = previous.peak - need.total
    why = "dom0 held %d ports for its last domain on this host, %d more than predicted" % (previous.peak, extra)
    return need._replace(lines=need.lines + [need_model.Line("held beyond the model", extra, why)])


def with_held_elsewhere(need: Need, held: int) -> Need:
    """The need raised to what the VM's domain holds in the dom0 it comes from (a migration's
    source measured it), if more: a guest that binds more than the model predicts arrives so."""
    if held <= need.total:
        return need
    extra = held - need.total
    why = "its domain holds %d ports in the source's dom0, %d more than predicted" % (held, extra)
    return need._replace(lines=need.lines + [need_model.Line("held on the source", extra, why)])


def survey(cfg: Config, api: Xapi, host_ref: str, deadline: Deadline, detail: bool = False,
           only: Optional[Set[str]] = None) -> Survey:
    """dom0 first, xapi second: a VM that gets its domain in between is then charged its whole
    need minus the nothing dom0 held for it, never its ports twice.

    ``only``: ask xapi about these VMs (the ledger's) rather than every VM on the host; none,
    no call at all.
    """
    dom0 = probes.read_dom0(cfg, deadline, detail)
    asked_at = state.now()
    if only is None:
        return Survey(dom0, api.vms_on_host(host_ref), asked_at, None, host_ref)
    records = api.where("VM", any_of("uuid", sorted(only))) if only else {}
    return Survey(dom0, records, asked_at, frozenset(only), host_ref)


def ledger_snapshot(cfg: Config, boot_id: str) -> Optional[Set[str]]:
    """The VMs the ledger names, read without the lock (what xapi is asked about), or None when
    it will have to be rebuilt or completed from every VM on the host."""
    peek = ledger.load(cfg.ledger["path"], boot_id, set_aside=False)
    charges = list((peek.entries or {}).values()) + list(peek.unfolded)
    if peek.entries is None or any(e.need == ledger.UNKNOWN_NEED for e in charges):
        return None
    return {e.vm_uuid for e in charges}


def is_bypassed(cfg: Config, vm_uuid: str) -> bool:
    """Only root in dom0 exempts a VM (``[policy] bypass``): a VM's own keys are its owner's."""
    return vm_uuid.lower() in cfg.policy["bypass"]


def needs_of(cfg: Config, api: Xapi, vms: Dict[str, Record], control: Optional[Record],
             backend: Dict[str, str]) -> Dict[str, int]:
    """The need of each of these VMs (by uuid), as a start's is computed (``describe``, ``predict``).

    A record the model cannot read is left out: it is charged what dom0 holds for it.
    """
    facts = host_facts(control, backend)
    profile = profile_of(cfg)
    found = {}
    for described in describe(api, vms).values():
        try:
            found[str(described.vm["uuid"])] = predict(facts, profile, described).total
        except (ValueError, KeyError):
            continue
    return found


class Described(NamedTuple):
    """A VM as the model reads it: its record, devices and guest metrics."""

    vm: Record
    vbds: List[Record]
    vifs: List[Record]
    vgpus: List[Record]
    guest_metrics: Optional[Record]


def describe(api: Xapi, vms: Dict[str, Record]) -> Dict[str, Described]:
    """Each VM's devices and guest metrics, by ref: two calls whatever their number, one more
    if any has vGPUs, one more if any has guest metrics (the pool's, in one answer)."""
    if not vms:
        return {}
    vbds = api.where("VBD", any_of("VM", sorted(vms)))
    vifs = api.where("VIF", any_of("VM", sorted(vms)))
    with_vgpus = sorted(ref for ref, r in vms.items() if r.get("VGPUs"))
    vgpus = api.where("VGPU", any_of("VM", with_vgpus)) if with_vgpus else {}
    with_metrics = any((r.get("guest_metrics") or "OpaqueRef:NULL") != "OpaqueRef:NULL" for r in vms.values())
    metrics = api.call("VM_guest_metrics.get_all_records") if with_metrics else {}
    return {
        ref: Described(vm, [r for r in vbds.values() if r.get("VM") == ref],
                       [r for r in vifs.values() if r.get("VM") == ref],
                       [r for r in vgpus.values() if r.get("VM") == ref], metrics.get(vm.get("guest_metrics")))
        for ref, vm in vms.items()
    }


def predict(facts: HostFacts, profile: Profile, described: Described) -> Need:
    """The model's need for a described VM: the same computation as a start's."""
    d = described
    return need_model.vm_need(d.vm, d.vbds, d.vifs, facts, profile, d.vgpus, d.guest_metrics)


def load_entries(cfg: Config, api: Xapi, subject_vm_ref: str, control: Optional[Record], found: Survey,
                 boot_id: str, set_aside: bool, known: Optional[Dict[str, int]] = None) -> ledger.Loaded:
    """The ledger, or, when it is lost, corrupt or an earlier boot's, one rebuilt from live state.

    Every caller comes here: a rebuilt ledger holds each VM running or starting on the host
    at its need (charging then takes off what dom0 already holds for each), and the pending
    charges over them. A charge whose need was not known when it was made (a start let through
    on error) gets it now. ``known``: the needs of the VMs on the host, if computed already
    (``admit`` does so before taking the lock, so that no xapi call is made under it).
    """
    loaded = ledger.load(cfg.ledger["path"], boot_id, set_aside=set_aside)
    entries = loaded.entries
    if entries is None and found.asked is not None:  # lost since it was read without the lock (rare)
        found = found._replace(on_host=api.vms_on_host(found.host_ref))
        known = None
    guests = others(found, subject_vm_ref)
    needs = known

    def needs_here() -> Dict[str, int]:
        nonlocal needs
        if needs is None:
            needs = needs_of(cfg, api, guests, control, found.dom0.backend)
        return needs

    if entries is None:  # as xapi saw the host when it was asked: charged as of then
        rebuilt = {u: Entry(u, _name(guests, u), n, found.asked_at, None, HOW_REBUILT)
                   for u, n in needs_here().items()}
        entries = ledger.fold(rebuilt, loaded.unfolded)
    unknown = {e.vm_uuid for e in entries.values() if e.need == ledger.UNKNOWN_NEED}
    if unknown:
        resolved = {u: n for u, n in needs_here().items() if u in unknown}
        missing = unknown - set(resolved)
        if missing:  # charged after xapi was asked: look them up (this rare path costs more calls)
            vms = api.where("VM", any_of("uuid", sorted(missing)))
            resolved.update(needs_of(cfg, api, vms, control, found.dom0.backend))
        entries = {u: (e._replace(need=resolved[u]) if u in resolved else e) for u, e in entries.items()
                   if e.need != ledger.UNKNOWN_NEED or u in resolved}
    return loaded._replace(entries=entries)


def others(found: Survey, subject_vm_ref: str) -> Dict[str, Record]:
    """The guests xapi lists on the host, the VM being decided left out."""
    return {ref: r for ref, r in found.on_host.items() if not r.get("is_control_domain") and ref != subject_vm_ref}


def _name(vms: Dict[str, Record], uuid: str) -> str:
    return next((str(r.get("name_label", "")) for r in vms.values() if r.get("uuid") == uuid), "")


def less_candidate(dom0: Dom0, ports: int) -> Dom0:
    """dom0 as it was before the candidate's own domain bound ``ports`` (each took an IRQ too)."""
    table = dom0.ports._replace(ports=dom0.ports.ports - ports)
    return dom0._replace(ports=table, irqs_used=dom0.irqs_used - ports)
