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

from typing import Any, Dict, List, NamedTuple, Optional

from . import gather, ledger, probes, state
from .config import Config
from .deadline import Deadline
from .model.charging import HOW_AUDITED, RUNNING, Entry, here_from_records
from .model.need import HostFacts, Need
from .model.profiles import Profile, with_overrides
from .xapi import Xapi

EXACT, UNDER, OVER, PENDING = "exact", "under", "over", "pending"
VERDICTS = (EXACT, UNDER, OVER, PENDING)

# ``[need]`` settings tried, in this order, to cover a VM that holds more than predicted
COVERS = (("ctrl_ring", "always"), ("vif_queues", "backend_max"), ("vbd_rings", "backend_max"))


class Finding(NamedTuple):
    """One running VM: its prediction, what dom0 holds for its domain, the verdict."""

    vm_uuid: str
    vm_name: str
    domid: int
    need: Need
    held: int
    verdict: str
    cover: Optional[str]  # for ``under``: the [need] key and value that would cover it

    def as_json(self) -> Dict[str, Any]:
        return {"vm_uuid": self.vm_uuid, "vm_name": self.vm_name, "predicted": self.need.total,
                "held": self.held, "verdict": self.verdict, "breakdown": self.need.as_json()["breakdown"]}


class Report(NamedTuple):
    host_name: str
    findings: List[Finding]

    def as_json(self) -> Dict[str, Any]:
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
    """The first ``[need]`` setting whose prediction covers what the VM holds, else an allowance."""
    for key, value in COVERS:
        if getattr(profile, key) == value:
            continue
        if gather.predict(facts, with_overrides(profile, {key: value}), described).total >= held:
            return "[need] %s = %s" % (key, value)
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
    for described in gather.describe(api, running).values():
        uuid = str(described.vm["uuid"])
        domid = here[uuid].domid or 0
        need = gather.predict(facts, profile, described)
        held = found.dom0.ports.by_remote_domain.get(domid, 0)
        drivers_up = bool((described.guest_metrics or {}).get("PV_drivers_detected"))
        verdict = verdict_of(need.total, held, drivers_up)
        cover = cover_for(held, described, facts, profile) if verdict == UNDER else None
        findings.append(Finding(uuid, need.vm_name, domid, need, held, verdict, cover))
    findings.sort(key=lambda f: (f.vm_name, f.vm_uuid))
    report = Report(str(host.get("name_label", "")), findings)
    under = [f for f in findings if f.verdict == UNDER]
    if under:
        _charge_peaks(cfg, api, control, found, under, deadline)
        _signal(cfg, report.host_name, under)
    return report


def _charge_peaks(cfg: Config, api: Xapi, control: Optional[Dict[str, Any]], found: gather.Survey,
                  under: List[Finding], deadline: Deadline) -> None:
    """Enter each VM found holding more than predicted in the ledger at what it holds."""
    path = cfg.ledger["path"]
    boot_id = state.boot_id(cfg)
    with ledger.locked(path, deadline):
        loaded = gather.load_entries(cfg, api, "", control, found, boot_id, set_aside=True)
        entries = dict(loaded.entries or {})
        for f in under:
            known = entries.get(f.vm_uuid)
            if known is not None and known.domid in (None, f.domid):
                entries[f.vm_uuid] = known._replace(domid=f.domid, peak=max(known.peak, f.held))
            else:
                entries[f.vm_uuid] = Entry(f.vm_uuid, f.vm_name, f.need.total, found.asked_at, f.domid,
                                           HOW_AUDITED, f.held)
        ledger.save(path, boot_id, entries, loaded)
    ledger.sync(path)


def _signal(cfg: Config, host_name: str, under: List[Finding]) -> None:
    from . import decisionlog

    decisionlog.configure(cfg.log["file"])
    log = decisionlog.get()
    for f in under:
        log.warning("audit_under", vm_uuid=f.vm_uuid, vm_name=f.vm_name, host_name=host_name,
                    predicted=f.need.total, held=f.held, cover=f.cover, breakdown=f.need.as_json()["breakdown"])
        try:
            state.bump(cfg, state.COUNT_AUDIT_UNDER)
        except OSError as exc:
            log.warning("count_failed", counter=state.COUNT_AUDIT_UNDER, error=str(exc))
