"""Gather: what a decision reads before the ledger's lock, where slow I/O may happen.

The subject (the VM, its devices, the host), dom0 as read now, a snapshot of the ledger
and its appended charges, and the needs of the VMs the snapshot names, asked of xapi.
Nothing here is written.
"""

from . import ledger, probes, state
from .config import Config
from .deadline import Deadline
from .model import need as need_model
from .model.charging import HOW_REBOOTING, HOW_REBUILT, HOW_SEEN, HOW_UNCHECKED, Entry
from .model.need import HostFacts, Need, as_int
from .model.profiles import PROFILES, Profile, with_overrides
from .namedtuple import NamedTuple
from .probes import Dom0
from .xapi import Xapi, any_of, quote

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, FrozenSet, List, Optional, Set

    from .xapi import Record


def profile_of(cfg: Config) -> Profile:
    """The configured profile with the site's ``[need]`` overrides (every key is a profile field)."""
    return with_overrides(PROFILES[cfg.policy.profile], cfg.need._asdict())


def host_facts(control_domain: "Optional[Record]", backend: "Dict[str, str]") -> HostFacts:
    """dom0's vCPUs from its xapi record (never from the machine this runs on) and backend caps."""
    vcpus = 1
    if control_domain:
        vcpus = as_int(control_domain.get("VCPUs_at_startup") or control_domain.get("VCPUs_max", 1), "VCPUs")

    def number(key: str) -> "Optional[int]":
        text = backend.get(key, "")
        return int(text) if text.isdigit() else None

    split = backend.get("xen_netback.separate_tx_rx_irq")
    return HostFacts(
        dom0_vcpus=max(vcpus, 1),
        netback_max_queues=number("xen_netback.max_queues"),
        netback_split=None if split is None else split.upper() in ("Y", "1"),
        blkback_max_queues=number("xen_blkback.max_queues"),
        vbd_backend=backend.get(probes.VBD_BACKEND),
    )


class Subject(NamedTuple):
    """The VM being decided, its devices, and the host it would run on, as xapi described them."""

    vm_ref: str
    vm: "Record"
    host_ref: str
    host: "Record"
    control_domain: "Optional[Record]"
    vbds: "List[Record]"
    vifs: "List[Record]"
    vgpus: "List[Record]"
    guest_metrics: "Optional[Record]" = None  # VM_guest_metrics, when the VM has one

    @property
    def vm_uuid(self) -> str:
        return str(self.vm.get("uuid", ""))

    @property
    def host_name(self) -> str:
        return str(self.host.get("name_label", ""))


class Survey(NamedTuple):
    """dom0 as read now, then what xapi says runs or starts on the host, and when it was asked."""

    dom0: Dom0
    on_host: "Dict[str, Record]"  # by ref, control domain included
    asked_at: float  # CLOCK_MONOTONIC
    asked: "Optional[FrozenSet[str]]" = None  # the uuids xapi was asked about; None: every VM on the host
    host_ref: str = ""


def read_subject(cfg: Config, api: Xapi, vm_key: str, host_uuid: "Optional[str]" = None) -> Subject:
    """The host, the VM with dom0's record, and the VM's devices: four calls, one more for vGPUs and one
    for guest metrics when the VM has them."""
    host_ref, host = api.host_by_uuid(host_uuid or probes.this_host_uuid(cfg))
    vm_ref, vm, control = api.vm_and_control_domain(vm_key, host_ref)
    need_model.refuse_non_candidate(vm)
    vbds, vifs, vgpus = api.devices(vm_ref, vm)
    return Subject(vm_ref, vm, host_ref, host, control, vbds, vifs, vgpus, api.guest_metrics(vm))


def compute_need(cfg: Config, subject: Subject, backend: "Dict[str, str]") -> Need:
    facts = host_facts(subject.control_domain, backend)
    return need_model.vm_need(subject.vm, subject.vbds, subject.vifs, facts, profile_of(cfg), subject.vgpus,
                              subject.guest_metrics)


def with_peak(need: Need, previous: "Optional[Entry]") -> Need:
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
           only: "Optional[Set[str]]" = None) -> Survey:
    """dom0 first, xapi second: a VM that gets its domain in between is then charged its whole
    need minus the nothing dom0 held for it, never its ports twice.

    ``only``: ask xapi about these VMs (the ledger's) and about every VM it shows on this host
    without a domain here (``without_domain``), rather than every VM on the host.
    """
    dom0 = probes.read_dom0(cfg, deadline, detail)
    asked_at = state.now()
    if only is None:
        return Survey(dom0, api.vms_on_host(host_ref), asked_at, None, host_ref)
    expression = without_domain(host_ref, dom0)
    if only:
        expression = "%s or %s" % (any_of("uuid", sorted(only)), expression)
    records = api.where("VM", expression)
    asked = frozenset(only) | {str(r.get("uuid", "")) for r in records.values()}
    return Survey(dom0, records, asked_at, asked, host_ref)


def without_domain(host_ref: str, dom0: Dom0) -> str:
    """xapi's filter for the VMs it shows on this host whose domain dom0 does not hold: starting or
    arriving by migration (scheduled here), and rebooting (Running here under a domid whose domain
    is gone: every live domain holds its xenstore channel in dom0, ``evtchn-accounting.md``)."""
    live = sorted(d for d in dom0.ports.by_remote_domain if d > 0)
    running = "(field \"resident_on\" = %s and field \"power_state\" = \"Running\"%s)" % (
        quote(host_ref), " and not (%s)" % any_of("domid", [str(d) for d in live]) if live else "")
    return "field \"scheduled_to_be_resident_on\" = %s or %s" % (quote(host_ref), running)


def named(snapshot: ledger.Loaded) -> "Optional[Set[str]]":
    """The VMs a ledger snapshot names (what xapi is asked about), or None when it must be rebuilt
    from every VM on the host."""
    if snapshot.entries is None:
        return None
    return set(snapshot.entries)


def is_rebooting(subject: Subject, dom0: Dom0) -> bool:
    """The VM being decided is rebooting here: xapi shows it Running on this host under its old
    domid while that domain is already gone from dom0 (``xapi-contract.md``, section 1)."""
    found = Survey(dom0, {}, 0.0, None, subject.host_ref)
    return seen_as(subject.vm, found) == HOW_REBOOTING


def is_bypassed(cfg: Config, vm_uuid: str) -> bool:
    """Only root in dom0 exempts a VM (``[policy] bypass``): a VM's own keys are its owner's."""
    return vm_uuid.lower() in cfg.policy.bypass


def needs_of(cfg: Config, api: Xapi, vms: "Dict[str, Record]", control: "Optional[Record]",
             backend: "Dict[str, str]") -> "Dict[str, int]":
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

    vm: "Record"
    vbds: "List[Record]"
    vifs: "List[Record]"
    vgpus: "List[Record]"
    guest_metrics: "Optional[Record]"


def describe(api: Xapi, vms: "Dict[str, Record]") -> "Dict[str, Described]":
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


class Gathered(NamedTuple):
    """Everything a decision reads before the lock."""

    subject: Subject
    boot_id: str
    found: Survey
    charges: "Dict[str, Entry]"  # the ledger as read, completed from xapi (``charges``)
    need: Need  # the subject's, as the model predicts it
    bypassed: bool
    rebooting: bool  # the subject is rebooting here (``is_rebooting``)
    held_elsewhere: int = 0  # what its domain holds in the dom0 it migrates from (measured there)


def gather(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: "Optional[str]" = None,
           candidate_domid: "Optional[int]" = None, held_elsewhere: int = 0) -> Gathered:
    """Read what a decision needs, before the lock: every xapi call and dom0's probes.

    ``candidate_domid``: the VM's own new domain (a resume): what dom0 holds for it is taken
    off dom0's use, so that it is not counted twice. ``held_elsewhere``: what a migrating VM's
    domain holds in its source's dom0; its need is raised to it.
    """
    subject = read_subject(cfg, api, vm_key, host_uuid)
    boot_id = state.boot_id(cfg)
    snapshot = ledger.load(cfg.ledger.path, boot_id)
    found = survey(cfg, api, subject.host_ref, deadline, only=named(snapshot))
    held_by_candidate = found.dom0.ports.by_remote_domain.get(candidate_domid, 0) if candidate_domid else 0
    if held_by_candidate:
        found = found._replace(dom0=less_candidate(found.dom0, held_by_candidate))
    charges = charges_of(cfg, api, subject.vm_ref, subject.control_domain, found, snapshot)
    need = with_held_elsewhere(compute_need(cfg, subject, found.dom0.backend), held_elsewhere)
    return Gathered(subject, boot_id, found, charges, need, is_bypassed(cfg, subject.vm_uuid),
                    is_rebooting(subject, found.dom0), held_elsewhere)


def charges_of(cfg: Config, api: Xapi, subject_vm_ref: str, control: "Optional[Record]", found: Survey,
               loaded: ledger.Loaded) -> "Dict[str, Entry]":
    """The ledger's entries completed from what xapi said: rebuilt from every VM on the host when
    the ledger is lost, corrupt or an earlier boot's; a charge of unknown need (a start let through
    on error) given its need; and every VM xapi shows on this host without a domain here that the
    ledger does not name (starting, rebooting, arriving: ``without_domain``), charged its need as
    seen. A charge xapi says nothing of here leaves when settled; one whose need the model cannot
    compute is charged what dom0 holds for it.
    """
    guests = others(found, subject_vm_ref)
    entries = loaded.entries
    if entries is None:  # as xapi saw the host when it was asked: charged as of then
        wanted = guests
        seen: Dict[str, str] = {}
    else:
        unknown = {u for u, e in entries.items() if e.need == ledger.UNKNOWN_NEED}
        seen = {str(r.get("uuid")): how for r, how in ((r, seen_as(r, found)) for r in guests.values())
                if how and r.get("uuid") not in entries}
        wanted = {ref: r for ref, r in guests.items() if r.get("uuid") in unknown or r.get("uuid") in seen}
    needs = needs_of(cfg, api, wanted, control, found.dom0.backend) if wanted else {}
    if entries is None:
        rebuilt = {u: Entry(u, _name(guests, u), n, found.asked_at, None, HOW_REBUILT) for u, n in needs.items()}
        return ledger.fold(rebuilt, loaded.unfolded)
    completed = {u: (e._replace(need=needs[u]) if e.need == ledger.UNKNOWN_NEED and u in needs else e)
                 for u, e in entries.items() if e.need != ledger.UNKNOWN_NEED or u in needs}
    for uuid, need in needs.items():
        if uuid not in completed:
            completed[uuid] = Entry(uuid, _name(guests, uuid), need, found.asked_at, None, seen[uuid])
    return completed


UNCHECKED_TO = "xsguard-unchecked-to"  # VM.other_config: the host a migration was let through to undecided


def seen_as(record: "Record", found: Survey) -> "Optional[str]":
    """How a VM xapi shows on this host without a domain here is entered in the ledger, if it is one:
    HOW_REBOOTING (Running here under a domid dom0 holds nothing for), HOW_SEEN (arriving by
    migration: scheduled here, running on another host), HOW_UNCHECKED (arriving, and its source's
    hook let it through undecided, ``UNCHECKED_TO`` naming this host: no decision of its own will
    come, so it is charged at once).

    A VM starting or resuming here (scheduled here, halted or suspended) is not: its own hook runs
    before its domain is made and decides it under the same lock (or, failing, appends its charge),
    and charging it before then would refuse others for room it may never take.
    """
    if record.get("scheduled_to_be_resident_on") == found.host_ref:
        arriving = record.get("power_state") in ("Running", "Paused") and record.get("resident_on") != found.host_ref
        if not arriving:
            return None
        unchecked = (record.get("other_config") or {}).get(UNCHECKED_TO) == found.host_ref
        return HOW_UNCHECKED if unchecked else HOW_SEEN
    try:
        domid = int(str(record.get("domid", -1)))
    except ValueError:
        return None
    if (record.get("resident_on") == found.host_ref and record.get("power_state") == "Running" and domid > 0
            and found.dom0.ports.by_remote_domain.get(domid, 0) == 0):
        return HOW_REBOOTING
    return None


def load_entries(cfg: Config, api: Xapi, subject_vm_ref: str, control: "Optional[Record]", found: Survey,
                 boot_id: str) -> ledger.Loaded:
    """The ledger as ``status``, ``audit`` and xsguard-rrdd read it, without the lock: ``charges_of``
    over the ledger read now (``audit`` merges it into the ledger it takes under the lock)."""
    loaded = ledger.load(cfg.ledger.path, boot_id)
    return loaded._replace(entries=charges_of(cfg, api, subject_vm_ref, control, found, loaded))


def others(found: Survey, subject_vm_ref: str) -> "Dict[str, Record]":
    """The guests xapi lists on the host, the VM being decided left out."""
    return {ref: r for ref, r in found.on_host.items() if not r.get("is_control_domain") and ref != subject_vm_ref}


def _name(vms: "Dict[str, Record]", uuid: str) -> str:
    return next((str(r.get("name_label", "")) for r in vms.values() if r.get("uuid") == uuid), "")


def less_candidate(dom0: Dom0, ports: int) -> Dom0:
    """dom0 as it was before the candidate's own domain bound ``ports`` (each took an IRQ too)."""
    table = dom0.ports._replace(ports=dom0.ports.ports - ports)
    return dom0._replace(ports=table, irqs_used=dom0.irqs_used - ports)
