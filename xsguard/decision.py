"""The one path of a decision: read the VM and the host, measure dom0, charge the ledger, judge.

The hooks, the host plugin and the command all come here and differ only in whether the
outcome is recorded: ``evaluate`` answers; ``admit`` answers and, as ``POLICY`` says,
records the VM in the ledger under its lock. Slow work (xapi, lsevtchn) happens before the
lock; under it there is only the ledger's read, the arithmetic and, for an admission, one
rename. ``status`` charges the same ledger the same way.
"""

import os
from typing import Any, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Set, Tuple

from . import bootcache, ledger, probes, state
from .config import Config
from .deadline import Deadline
from .errors import XapiUnreachable
from .model import need as need_model
from .model.ceilings import Ceiling
from .model.charging import HOW_BYPASSED, HOW_CHECKED, HOW_REBUILT, Entry, Here, Owed, here_from_records, settle
from .model.need import HostFacts, Need, as_int
from .model.profiles import PROFILES, Profile, with_overrides
from .model.verdict import Verdict, headroom, judge
from .probes import Dom0
from .xapi import Record, Xapi, any_of

# What each hook exits with (xenopsd's meaning: 0 go on, 1 log and continue, 2 abort).
EXIT_GO = 0
EXIT_LOG_AND_CONTINUE = 1
EXIT_REFUSE = 2


class Policy(NamedTuple):
    """What follows from a verdict under a mode."""

    exit: int  # the hook's exit status
    event: str  # the decision log's event, after the operation: start_admitted, migrate_refused, ...
    recorded: bool  # the VM is entered in the ledger (it goes ahead)
    signalled: bool  # syslog and a xapi alert


# (mode, admitted) -> policy; a bypassed VM goes ahead unchecked and is still charged
POLICY: Dict[Tuple[str, bool], Policy] = {
    ("enforce", True): Policy(EXIT_GO, "admitted", True, False),
    ("enforce", False): Policy(EXIT_REFUSE, "refused", False, True),
    ("warn", True): Policy(EXIT_GO, "admitted", True, False),
    ("warn", False): Policy(EXIT_LOG_AND_CONTINUE, "warned", True, True),
    ("off", True): Policy(EXIT_GO, "admitted", True, False),
    ("off", False): Policy(EXIT_GO, "would_refuse", True, False),
}
BYPASSED = Policy(EXIT_GO, "bypassed", True, False)


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


class Outcome(NamedTuple):
    """A decision and everything behind it."""

    subject: Subject
    verdict: Verdict
    owed: List[Owed]
    policy: Policy
    bypassed: bool
    ledger_note: Optional[str]
    lock_wait: float
    ceilings: Tuple[Ceiling, ...] = ()  # as read for this decision

    @property
    def need(self) -> Need:
        return self.verdict.need


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


def grace(cfg: Config) -> float:
    """How long a VM whose domain holds its whole need stays in the ledger: twice the longest a
    decision that records may last (a hook's deadline, the plugin's at least 10 s)."""
    return 2 * max(cfg.policy["deadline"], 10.0)


def _ledger_as_it_stands(cfg: Config, boot_id: str) -> Optional[Set[str]]:
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
    others = _others(found, subject_vm_ref)
    needs = known

    def needs_here() -> Dict[str, int]:
        nonlocal needs
        if needs is None:
            needs = needs_of(cfg, api, others, control, found.dom0.backend)
        return needs

    if entries is None:  # as xapi saw the host when it was asked: charged as of then
        rebuilt = {u: Entry(u, _name(others, u), n, found.asked_at, None, HOW_REBUILT)
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


def _others(found: Survey, subject_vm_ref: str) -> Dict[str, Record]:
    """The guests xapi lists on the host, the VM being decided left out."""
    return {ref: r for ref, r in found.on_host.items() if not r.get("is_control_domain") and ref != subject_vm_ref}


def _name(vms: Dict[str, Record], uuid: str) -> str:
    return next((str(r.get("name_label", "")) for r in vms.values() if r.get("uuid") == uuid), "")


def charge(cfg: Config, entries: Dict[str, Entry], subject: Subject, found: Survey, candidate: str
           ) -> Tuple[Dict[str, Entry], List[Owed]]:
    """The charging rule applied to this host's ledger: what remains, and what each VM is owed."""
    records = {str(r["uuid"]): r for r in found.on_host.values() if r.get("uuid") in entries}
    here = here_from_records(records, subject.host_ref)
    return settle(entries, here, found.dom0.ports.by_remote_domain, state.now(), cfg.ledger["ttl"], candidate,
                  found.asked_at, set(found.asked) if found.asked is not None else None, grace(cfg))


def _verdict(cfg: Config, subject: Subject, found: Survey, owed: List[Owed], need: Need) -> Verdict:
    promised = sum(o.owed for o in owed)
    return judge(need, subject.host_name, found.dom0.ceilings, found.dom0.used, promised, cfg.policy["margin"])


def evaluate(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: Optional[str] = None) -> Outcome:
    """Would ``vm_key`` be admitted on the host now: the same reading as ``admit``, nothing recorded."""
    subject = read_subject(cfg, api, vm_key, host_uuid)
    boot_id = state.boot_id(cfg)
    found = survey(cfg, api, subject.host_ref, deadline, only=_ledger_as_it_stands(cfg, boot_id))
    loaded = load_entries(cfg, api, subject.vm_ref, subject.control_domain, found, boot_id, set_aside=False)
    _, owed = charge(cfg, loaded.entries or {}, subject, found, subject.vm_uuid)
    need = with_peak(compute_need(cfg, subject, found.dom0.backend), (loaded.entries or {}).get(subject.vm_uuid))
    verdict = _verdict(cfg, subject, found, owed, need)
    bypassed = is_bypassed(cfg, subject.vm_uuid)
    policy = BYPASSED if bypassed else POLICY[(cfg.policy["mode"], verdict.admitted)]
    return Outcome(subject, verdict, owed, policy, bypassed, loaded.note, 0.0, tuple(found.dom0.ceilings))


def admit(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: Optional[str] = None,
          progress: Optional[Dict[str, Any]] = None, candidate_domid: Optional[int] = None) -> Outcome:
    """Decide ``vm_key`` on the host and, as ``POLICY`` says, record it in the ledger.

    ``candidate_domid``: the VM's own new domain (a resume): what dom0 holds for it is taken
    off dom0's use, so that it is not counted twice. ``progress`` receives the VM's need as soon
    as it is known, for a caller that must charge it if the decision fails.
    """
    subject = read_subject(cfg, api, vm_key, host_uuid)
    boot_id = state.boot_id(cfg)
    only = _ledger_as_it_stands(cfg, boot_id)
    found = survey(cfg, api, subject.host_ref, deadline, only=only)
    held_by_candidate = found.dom0.ports.by_remote_domain.get(candidate_domid, 0) if candidate_domid else 0
    if held_by_candidate:
        found = found._replace(dom0=_less(found.dom0, held_by_candidate))
    need = compute_need(cfg, subject, found.dom0.backend)
    if progress is not None:
        progress.update(need=need.total, vm_name=need.vm_name)
    path = cfg.ledger["path"]
    bypassed = is_bypassed(cfg, subject.vm_uuid)
    # a rebuild's needs are computed before the lock, so that it is never held across xapi calls
    known = None if only is not None else needs_of(cfg, api, _others(found, subject.vm_ref),
                                                   subject.control_domain, found.dom0.backend)
    with ledger.locked(path, deadline) as waited:
        loaded = load_entries(cfg, api, subject.vm_ref, subject.control_domain, found, boot_id, set_aside=True,
                              known=known)
        kept, owed = charge(cfg, loaded.entries or {}, subject, found, subject.vm_uuid)
        previous = (loaded.entries or {}).get(subject.vm_uuid)
        verdict = _verdict(cfg, subject, found, owed, with_peak(need, previous))
        policy = BYPASSED if bypassed else POLICY[(cfg.policy["mode"], verdict.admitted)]
        if policy.recorded:  # a refusal writes nothing: it must stand on a full disk too
            how = HOW_BYPASSED if bypassed else HOW_CHECKED
            kept[subject.vm_uuid] = Entry(subject.vm_uuid, verdict.need.vm_name, verdict.need.total, state.now(),
                                          None, how, previous.peak if previous else 0)
            ledger.save(path, boot_id, kept, loaded.pending_size)
    if policy.recorded:
        ledger.sync(path)
    return Outcome(subject, verdict, owed, policy, bypassed, loaded.note, waited, tuple(found.dom0.ceilings))


def _less(dom0: Dom0, ports: int) -> Dom0:
    """dom0 as it was before the candidate's own domain bound ``ports`` (each took an IRQ too)."""
    table = dom0.ports._replace(ports=dom0.ports.ports - ports)
    return dom0._replace(ports=table, irqs_used=dom0.irqs_used - ports)


def need_report(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline,
                host_uuid: Optional[str] = None) -> Dict[str, Any]:
    """A VM's breakdown on the host, and whether it is exempt from the check."""
    subject = read_subject(cfg, api, vm_key, host_uuid)
    result = compute_need(cfg, subject, probes.backend_params(cfg.dom0["sys_module"])).as_json()
    result["host_name"] = subject.host_name
    result["bypassed"] = is_bypassed(cfg, subject.vm_uuid)
    return result


def check_report(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline,
                 host_uuid: Optional[str] = None) -> Dict[str, Any]:
    """Would the VM be admitted on the host now (nothing recorded: no ``recorded`` key, which is ``admit``'s)."""
    result = outcome_json(cfg, evaluate(cfg, api, vm_key, deadline, host_uuid))
    del result["recorded"]
    return result


def outcome_json(cfg: Config, outcome: Outcome) -> Dict[str, Any]:
    """What ``check`` and ``admit`` answer: the verdict's figures, the mode, whether bypassed."""
    result = outcome.verdict.as_json()
    result["mode"] = cfg.policy["mode"]
    result["bypassed"] = outcome.bypassed
    result["recorded"] = outcome.policy.recorded
    if outcome.bypassed:
        result["message"] = ("VM %s is exempt from the check ([policy] bypass); it is still charged: %s"
                             % (outcome.subject.vm_uuid, result["message"]))
    return result


def ceiling_unknown_records(cfg: Config, ceilings: Iterable[Ceiling]) -> List[Dict[str, Any]]:
    """The ``ceiling_unknown`` records to log: one per unknown ceiling, the first time this boot.

    An unknown ceiling goes unchecked at every decision; the decision log says so once per
    boot (a marker in the state directory), ``status`` every time.
    """
    unknown = [c for c in ceilings if c.warning]
    if not unknown or not bootcache.first_this_boot(state.path(cfg, state.CEILING_UNKNOWN), state.boot_id(cfg)):
        return []
    return [{"ceiling": c.name, "source": c.source, "warning": c.warning} for c in unknown]


def log_ceiling_unknown(cfg: Config, ceilings: Iterable[Ceiling], host_uuid: str) -> None:
    """Log ``ceiling_unknown`` to the decision log, once per boot (for ``status``)."""
    records = ceiling_unknown_records(cfg, ceilings)
    if records:
        from . import decisionlog

        decisionlog.configure(cfg.log["file"])
        for fields in records:
            decisionlog.get().warning("ceiling_unknown", host_uuid=host_uuid, **fields)


def status(cfg: Config, api: Optional[Xapi], deadline: Deadline) -> Dict[str, Any]:
    """This dom0's ceilings, usage, promises, free ports, consumers, domains and leaks.

    With ``api`` None or xapi unreachable, the dom0 figures still come, without VM names and
    leaks, and each ledger entry is charged its whole need.
    """
    no_xapi = without_xapi(cfg)
    host_uuid = "" if no_xapi else probes.this_host_uuid(cfg)
    if no_xapi:
        api = None
    dom0 = probes.read_dom0(cfg, deadline, detail=True)
    log_ceiling_unknown(cfg, dom0.ceilings, host_uuid)
    boot_id = state.boot_id(cfg)
    names: Dict[int, Dict[str, str]] = {}
    host_name = ""
    xapi_note = no_xapi
    leaked: Optional[Dict[str, int]] = None
    entries: Dict[str, Entry] = {}
    note: Optional[str] = None
    here: Optional[Dict[str, Here]] = None
    asked_at = None
    if api is not None:
        try:
            host_ref, host = api.host_by_uuid(host_uuid)
            host_name = host.get("name_label", "")
            asked_at = state.now()
            found = Survey(dom0, api.vms_on_host(host_ref), asked_at)
            control = next((r for r in found.on_host.values() if r.get("is_control_domain")), None)
            loaded = load_entries(cfg, api, "", control, found, boot_id, set_aside=False)
            entries, note = loaded.entries or {}, loaded.note
            records = {str(r["uuid"]): r for r in found.on_host.values()}
            here = here_from_records(records, host_ref)
            for rec in records.values():
                state_here = here.get(str(rec["uuid"]))
                if state_here is not None and state_here.domid is not None:
                    names[state_here.domid] = {"vm_uuid": rec["uuid"], "vm_name": rec.get("name_label", "")}
            leaked = {str(d): n for d, n in sorted(dom0.ports.leaked(names).items())}
        except XapiUnreachable as exc:
            xapi_note = exc.message
            api = None
    if api is None:
        loaded = ledger.load(cfg.ledger["path"], boot_id, set_aside=False)
        entries = {u: e for u, e in (loaded.entries or {}).items() if e.need != ledger.UNKNOWN_NEED}
        note = loaded.note
        xapi_note = xapi_note or "xapi not consulted"
    _, owed = settle(entries, here, dom0.ports.by_remote_domain, state.now(), cfg.ledger["ttl"], "", asked_at)
    shown = figures(dom0, owed, cfg.policy["margin"])
    by_domain = {}
    for domid, count in sorted(dom0.ports.by_remote_domain.items()):
        entry: Dict[str, Any] = {"ports": count}
        entry.update(names.get(domid, {}))
        by_domain[str(domid)] = entry
    return {
        "host_uuid": host_uuid,
        "host_name": host_name,
        "port_limit": shown["port_limit"],
        "port_limit_source": dom0.port_ceiling.source,
        "ports_used": shown["ports_used"],
        "ports_free": shown["ports_free"],
        "irq_limit": shown["irq_limit"],
        "irq_limit_source": dom0.irq_ceiling.source,
        "irqs_used": shown["irqs_used"],
        "irqs_free": shown["irqs_free"],
        "margin": shown["margin"],
        "promised": shown["promised"],
        "promises": [o._asdict() for o in owed],
        "by_state": dom0.ports.by_state,
        "by_remote_domain": by_domain,
        "by_consumer": dom0.irq_table.by_consumer if dom0.irq_table else {},
        "leaked": leaked,
        "unparsed_lines": [{"line": n, "text": t[:120]} for n, t in dom0.ports.unparsed[:20]],
        "lsevtchn": dom0.lsevtchn,
        "notes": [n for n in (note, xapi_note) if n],
        "audit_under": state.counted(cfg, "audit_under"),
        "warnings": [c.warning for c in dom0.ceilings if c.warning],
        "refused": state.counted(cfg, "refused"),
        "unchecked": state.counted(cfg, "unchecked"),
        "software": software(),
    }


def figures(dom0: Dom0, owed: List[Owed], margin: int) -> Dict[str, Any]:
    """dom0's headroom as ``status`` shows it and xsguard-rrdd graphs it: used, promised, limit, free."""
    promised = sum(o.owed for o in owed)
    return {
        "port_limit": dom0.port_ceiling.limit,
        "ports_used": dom0.ports.ports,
        "ports_free": headroom(dom0.port_ceiling, dom0.ports.ports, promised, margin),
        "irq_limit": dom0.irq_ceiling.limit,
        "irqs_used": dom0.irqs_used,
        "irqs_free": headroom(dom0.irq_ceiling, dom0.irqs_used, promised, margin),
        "margin": margin,
        "promised": promised,
    }


def without_xapi(cfg: Config) -> Optional[str]:
    """Why xapi's side is unknown on a dom0 without xapi's inventory (plain Xen with xl), else None."""
    path = cfg.dom0["inventory"]
    if os.path.exists(path):
        return None
    return ("no %s: a Xen dom0 without xapi (xl?); xapi's side is unknown (VM names, leaks)"
            % path)


def software() -> Dict[str, Any]:
    """What runs: Python, xsguard and its dependencies, each with the directory it came from."""
    import platform

    import structlog
    import tenacity

    import xsguard

    found: Dict[str, Any] = {"python": platform.python_version()}
    for module in (xsguard, structlog, tenacity):
        where = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__ or "")))
        found[module.__name__] = {"version": _dist_version(module.__name__, where), "path": where}
    return found


def _dist_version(name: str, where: str) -> str:
    """The version in ``<name>-<version>.dist-info`` next to the package (3.6 has no importlib.metadata)."""
    if name == "xsguard":
        from . import __version__

        return __version__
    for entry in sorted(os.listdir(where)):
        if entry.startswith(name + "-") and entry.endswith((".dist-info", ".egg-info")):
            return entry[len(name) + 1:].rsplit(".", 1)[0]
    return "unknown"
