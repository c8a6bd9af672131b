"""Report: what a decision answers (``check``, ``admit``, ``need``) and the once-per-boot
``ceiling_unknown`` record; nothing here changes a decision."""


from . import bootcache, probes, state
from .commit import Outcome
from .config import Config
from .deadline import Deadline
from .decision import evaluate
from .gather import compute_need, is_bypassed, read_subject
from .model.ceilings import Ceiling
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional


def need_report(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline,
                host_uuid: "Optional[str]" = None) -> "Dict[str, Any]":
    """A VM's breakdown on the host, and whether it is exempt from the check."""
    subject = read_subject(cfg, api, vm_key, host_uuid)
    backend = probes.backend_params(cfg.dom0.sys_module, probes.read_optional(cfg.dom0.proc_interrupts))
    result = compute_need(cfg, subject, backend).as_json()
    result["host_name"] = subject.host_name
    result["bypassed"] = is_bypassed(cfg, subject.vm_uuid)
    return result


def check_report(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline,
                 host_uuid: "Optional[str]" = None) -> "Dict[str, Any]":
    """Would the VM be admitted on the host now (nothing recorded); ``resident`` when it runs
    there already: dom0 holds its ports, it is never judged against itself."""
    outcome = evaluate(cfg, api, vm_key, deadline, host_uuid)
    result = outcome_json(cfg, outcome)
    subject = outcome.subject
    if subject.vm.get("resident_on") == subject.host_ref and subject.vm.get("power_state") in RUNS_HERE:
        result.update(verdict=RESIDENT, checks=[], free_after=None, message=(
            "VM '%s' (%s) already runs on host '%s': dom0 holds its ports (they are in its use); "
            "nothing to check" % (subject.vm.get("name_label", ""), subject.vm_uuid, subject.host_name)))
    del result["recorded"]  # check records nothing: ``recorded`` is ``admit``'s
    return result


RESIDENT = "resident"  # check's verdict for a VM on the host it runs on
RUNS_HERE = ("Running", "Paused")  # power states of a VM whose domain exists on its host


def outcome_json(cfg: Config, outcome: Outcome) -> "Dict[str, Any]":
    """What ``check`` and ``admit`` answer: the verdict's figures, the mode, whether bypassed."""
    result = outcome.verdict.as_json()
    result["mode"] = cfg.policy.mode
    result["bypassed"] = outcome.bypassed
    result["recorded"] = outcome.policy.recorded
    if outcome.bypassed:
        result["message"] = ("VM %s is exempt from the check ([policy] bypass); it is still charged: %s"
                             % (outcome.subject.vm_uuid, result["message"]))
    return result


def decision_record(outcome: Outcome) -> "Dict[str, Any]":
    """What the decision log records of a decision made on this host (a start, resume or arriving migration)."""
    verdict, subject = outcome.verdict, outcome.subject
    return dict(
        vm_name=subject.vm.get("name_label", ""),
        host_uuid=subject.host.get("uuid", ""),
        host_name=subject.host_name,
        verdict=verdict.verdict,
        ceiling=verdict.binding.ceiling,
        need=verdict.need.total,
        checks=[c.as_json() for c in verdict.checks],
        breakdown=verdict.need.as_json()["breakdown"],
        promised_to=[p._asdict() for p in outcome.promises],
        lock_wait_ms=round(outcome.lock_wait * 1000, 1),
        lock_held_ms=round(outcome.lock_held * 1000, 2),
    )


def ceiling_unknown_records(cfg: Config, ceilings: "Iterable[Ceiling]") -> "List[Dict[str, Any]]":
    """The ``ceiling_unknown`` records to log: one per unknown ceiling, the first time this boot.

    An unknown ceiling goes unchecked at every decision; the decision log says so once per
    boot (a marker in the state directory), ``status`` every time.
    """
    unknown = [c for c in ceilings if c.warning]
    if not unknown or not bootcache.first_this_boot(state.path(cfg, state.CEILING_UNKNOWN), state.boot_id(cfg)):
        return []
    return [{"ceiling": c.name, "source": c.source, "warning": c.warning} for c in unknown]


def log_ceiling_unknown(cfg: Config, ceilings: "Iterable[Ceiling]", host_uuid: str) -> None:
    """Log ``ceiling_unknown`` to the decision log, once per boot (for ``status``)."""
    records = ceiling_unknown_records(cfg, ceilings)
    if records:
        from . import decisionlog

        decisionlog.configure(cfg.log.file)
        for fields in records:
            decisionlog.get().warning("ceiling_unknown", host_uuid=host_uuid, **fields)
