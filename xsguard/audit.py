"""``xsguard audit``: the model's prediction for every VM running here next to what dom0 holds.

dom0 is read first and xapi second, as for a decision (``gather.survey``), and each VM is
predicted by the same computation as its start (``gather.describe`` and ``predict``, this
host's facts and the site's profile). Verdicts:

- ``exact``: dom0 holds what the model predicts;
- ``under``: dom0 holds more: the model is wrong in the dangerous direction. Logged
  (``audit_under``), counted in ``status``, and the VM's ledger entry keeps what it holds
  (its peak), so that no later decision counts it at the prediction;
- ``over``: dom0 holds less though the guest's PV drivers are up (VM_guest_metrics
  ``PV_drivers_detected``): capacity stranded;
- ``pending``: its PV drivers are not up yet, so no verdict.
"""

from . import gather, learn, ledger, probes, state
from .config import Config
from .deadline import Deadline
from .errors import PermissionDenied, XapiFailure
from .model import need as need_model
from .model.charging import HOW_AUDITED, RUNNING, Entry, here_from_records
from .model.need import HostFacts, Need
from .model.profiles import Profile, with_overrides
from .namedtuple import NamedTuple
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    from .xapi import Record

EXACT, UNDER, OVER, PENDING = "exact", "under", "over", "pending"
VERDICTS = (EXACT, UNDER, OVER, PENDING)

# ``[need]`` settings tried to cover a VM that holds more than predicted; among those that do,
# the ones that predict exactly what it holds come first, then the least over-charging, then
# this order (a disk backend misread first: it explains an under for every kind of guest)
COVERS = (("vbd_backend", "blkback"), ("ctrl_ring", "always"), ("vif_queues", "backend_max"),
          ("vbd_rings", "backend_max"))


class Finding(NamedTuple):
    """One running VM: its prediction, what dom0 holds for its domain, the verdict."""

    vm_uuid: str
    vm_name: str
    domid: int
    need: Need
    held: int
    verdict: str
    cover: "Optional[str]"  # when it holds more than the model predicts (an ``under``, or a need raised
    # by what it was seen holding before): the [need] settings that would cover it, the best first

    def as_json(self) -> "Dict[str, Any]":
        return {"vm_uuid": self.vm_uuid, "vm_name": self.vm_name, "predicted": self.need.total,
                "held": self.held, "verdict": self.verdict, "breakdown": self.need.as_json()["breakdown"],
                "cover": self.cover}


class Report(NamedTuple):
    host_name: str
    findings: "List[Finding]"

    def as_json(self) -> "Dict[str, Any]":
        result: Dict[str, Any] = {"host_name": self.host_name, "vms": [f.as_json() for f in self.findings]}
        for verdict in VERDICTS:
            result[verdict] = sum(1 for f in self.findings if f.verdict == verdict)
        return result


def verdict_of(predicted: int, held: int, drivers_up: bool) -> str:
    if held > predicted:
        return UNDER
    if held == predicted:
        return EXACT
    return OVER if drivers_up else PENDING


def cover_for(held: int, described: gather.Described, facts: HostFacts, profile: Profile) -> str:
    """Every ``[need]`` setting whose prediction covers what the VM holds, those that predict
    it exactly first (marked so), else an allowance of the difference.

    ``ctrl_ring = always`` is left out for a PV-family guest: only Windows' PV drivers bind a
    control ring, and a PV guest is never Windows.
    """
    covering = []
    for rank, (key, value) in enumerate(COVERS):
        if getattr(profile, key) == value:
            continue
        if key == "ctrl_ring" and need_model.effective_domain_type(described.vm) != "hvm":
            continue
        total = gather.predict(facts, with_overrides(profile, {key: value}), described).total
        if total >= held:
            covering.append((total - held, rank, "[need] %s = %s%s" % (key, value, " (exact)" * (total == held))))
    if covering:
        return ", ".join(text for _, _, text in sorted(covering))
    predicted = gather.predict(facts, profile, described).total
    return "[need] extra_per_vm = %d" % (profile.extra_per_vm + held - predicted)


def audit(cfg: Config, api: Xapi, deadline: Deadline) -> Report:
    """Every VM running on this host, predicted and measured; each ``under`` logged, counted, charged."""
    host_ref, host = api.host_by_uuid(probes.this_host_uuid(cfg))
    found = gather.survey(cfg, api, host_ref, deadline)
    control = next((r for r in found.on_host.values() if r.get("is_control_domain")), None)
    here = here_from_records({str(r["uuid"]): r for r in found.on_host.values()}, host_ref)
    running = {ref: r for ref, r in found.on_host.items()
               if not r.get("is_control_domain") and str(r["uuid"]) in here
               and here[str(r["uuid"])].state == RUNNING}
    facts = gather.host_facts(control, found.dom0.backend)
    profile = gather.profile_of(cfg)
    findings = []
    learned = []
    for ref, described in gather.describe(api, running).items():
        uuid = str(described.vm["uuid"])
        domid = here[uuid].domid or 0
        need = gather.predict(facts, profile, described)
        held = found.dom0.ports.by_remote_domain.get(domid, 0)
        drivers_up = bool((described.guest_metrics or {}).get("PV_drivers_detected"))
        verdict = verdict_of(need.total, held, drivers_up)
        model = described._replace(vm=_unlearned(described.vm))
        cover = cover_for(held, model, facts, profile) if held > gather.predict(facts, profile, model).total else None
        findings.append(Finding(uuid, need.vm_name, domid, need, held, verdict, cover))
        learned.append(_learn(api, ref, described, need, held))
    findings.sort(key=lambda f: (f.vm_name, f.vm_uuid))
    report = Report(str(host.get("name_label", "")), findings)
    _log_learned(cfg, report.host_name, [fields for fields in learned if fields])
    under = [f for f in findings if f.verdict == UNDER]
    if under:
        _charge_peaks(cfg, api, control, found, under, deadline)
        _signal(cfg, report.host_name, under)
    return report


def _charge_peaks(cfg: Config, api: Xapi, control: "Optional[Dict[str, Any]]", found: gather.Survey,
                  under: "List[Finding]", deadline: Deadline) -> None:
    """Enter each VM found holding more than predicted in the ledger at what it holds: the ledger's
    charges completed from xapi before the lock (as a decision gathers), under it only the ledger's
    take, the merge and the save (``commit.completed``), no xapi call."""
    from .commit import completed

    path = cfg.ledger.path
    boot_id = state.boot_id(cfg)
    charges = dict(gather.load_entries(cfg, api, "", control, found, boot_id).entries or {})
    with ledger.locked(path, deadline):
        loaded = ledger.take(path, boot_id)
        entries, _ = completed(charges, loaded, max(f.held for f in under))
        for f in under:
            known = entries.get(f.vm_uuid)
            if known is not None and known.domid in (None, f.domid):
                entries[f.vm_uuid] = known._replace(domid=f.domid, peak=max(known.peak, f.held))
            else:
                entries[f.vm_uuid] = Entry(f.vm_uuid, f.vm_name, f.need.total, found.asked_at, f.domid,
                                           HOW_AUDITED, f.held)
        ledger.save(path, boot_id, entries, loaded)
    ledger.sync(path)


def _unlearned(vm: "Record") -> "Record":
    """The VM's record without the figure learned from what it held: the model's own prediction."""
    other = {k: v for k, v in (vm.get("other_config") or {}).items() if k != need_model.LEARNED_HELD}
    return dict(vm, other_config=other)


def _learn(api: Xapi, vm_ref: str, described: gather.Described, need: Need, held: int) -> "Dict[str, Any]":
    """Keep what is new about a running VM in its record (``learn.remember``); what to log."""
    vm = described.vm
    fields: Dict[str, Any] = {"vm_uuid": vm.get("uuid", ""), "vm_name": vm.get("name_label", "")}
    try:
        written = learn.remember(api, vm_ref, vm, need, held, described.guest_metrics)
    except (XapiFailure, PermissionDenied) as exc:  # the VM gone, a login that may not write: next time
        return dict(fields, event="learn_failed", error=exc.message)
    return dict(fields, event="learned", keys=written) if written else {}


def _log_learned(cfg: Config, host_name: str, learned: "List[Dict[str, Any]]") -> None:
    if not learned:
        return
    from . import decisionlog

    decisionlog.configure(cfg.log.file)
    log = decisionlog.get()
    for fields in learned:
        fields = dict(fields)
        event = fields.pop("event")
        (log.warning if event == "learn_failed" else log.info)(event, host_name=host_name, **fields)


def _signal(cfg: Config, host_name: str, under: "List[Finding]") -> None:
    from . import decisionlog

    decisionlog.configure(cfg.log.file)
    log = decisionlog.get()
    for f in under:
        log.warning("audit_under", vm_uuid=f.vm_uuid, vm_name=f.vm_name, host_name=host_name,
                    predicted=f.need.total, held=f.held, cover=f.cover, breakdown=f.need.as_json()["breakdown"])
        try:
            state.bump(cfg, state.COUNT_AUDIT_UNDER)
        except OSError as exc:
            log.warning("count_failed", counter=state.COUNT_AUDIT_UNDER, error=str(exc))
