"""The one path of a decision: gather (before the lock), commit (under it).

The hooks, the host plugin and the command all come here and differ only in whether the
outcome is recorded: ``evaluate`` answers; ``admit`` answers and, as ``POLICY`` says,
records the VM in the ledger under its lock. Slow work (xapi, lsevtchn) happens before the
lock; under it there is only the ledger's read, the arithmetic and, for an admission, one
rename.
"""

from typing import Any, Dict, Optional

from . import ledger, state
from .commit import BYPASSED, POLICY, Outcome, charge, verdict_of
from .config import Config
from .deadline import Deadline
from .gather import (
    compute_need,
    is_bypassed,
    ledger_snapshot,
    less_candidate,
    load_entries,
    needs_of,
    others,
    read_subject,
    survey,
    with_held_elsewhere,
    with_peak,
)
from .model.charging import HOW_BYPASSED, HOW_CHECKED, Entry
from .xapi import Xapi


def evaluate(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: Optional[str] = None) -> Outcome:
    """Would ``vm_key`` be admitted on the host now: the same reading as ``admit``, nothing recorded."""
    subject = read_subject(cfg, api, vm_key, host_uuid)
    boot_id = state.boot_id(cfg)
    found = survey(cfg, api, subject.host_ref, deadline, only=ledger_snapshot(cfg, boot_id))
    loaded = load_entries(cfg, api, subject.vm_ref, subject.control_domain, found, boot_id, set_aside=False)
    _, promises = charge(cfg, loaded.entries or {}, subject, found, subject.vm_uuid)
    need = with_peak(compute_need(cfg, subject, found.dom0.backend), (loaded.entries or {}).get(subject.vm_uuid))
    verdict = verdict_of(cfg, subject, found, promises, need)
    bypassed = is_bypassed(cfg, subject.vm_uuid)
    policy = BYPASSED if bypassed else POLICY[(cfg.policy["mode"], verdict.admitted)]
    return Outcome(subject, verdict, promises, policy, bypassed, loaded.note, 0.0, tuple(found.dom0.ceilings))


def admit(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: Optional[str] = None,
          progress: Optional[Dict[str, Any]] = None, candidate_domid: Optional[int] = None,
          held_elsewhere: int = 0) -> Outcome:
    """Decide ``vm_key`` on the host and, as ``POLICY`` says, record it in the ledger.

    ``candidate_domid``: the VM's own new domain (a resume): what dom0 holds for it is taken
    off dom0's use, so that it is not counted twice. ``progress`` receives the VM's need as soon
    as it is known, for a caller that must charge it if the decision fails. ``held_elsewhere``:
    what its domain holds in the dom0 it migrates from; it is charged the larger of that and its need.
    """
    subject = read_subject(cfg, api, vm_key, host_uuid)
    boot_id = state.boot_id(cfg)
    only = ledger_snapshot(cfg, boot_id)
    found = survey(cfg, api, subject.host_ref, deadline, only=only)
    held_by_candidate = found.dom0.ports.by_remote_domain.get(candidate_domid, 0) if candidate_domid else 0
    if held_by_candidate:
        found = found._replace(dom0=less_candidate(found.dom0, held_by_candidate))
    need = with_held_elsewhere(compute_need(cfg, subject, found.dom0.backend), held_elsewhere)
    if progress is not None:
        progress.update(need=need.total, vm_name=need.vm_name)
    path = cfg.ledger["path"]
    bypassed = is_bypassed(cfg, subject.vm_uuid)
    # a rebuild's needs are computed before the lock, so that it is never held across xapi calls
    known = None if only is not None else needs_of(cfg, api, others(found, subject.vm_ref),
                                                   subject.control_domain, found.dom0.backend)
    with ledger.locked(path, deadline) as waited:
        loaded = load_entries(cfg, api, subject.vm_ref, subject.control_domain, found, boot_id, set_aside=True,
                              known=known)
        kept, promises = charge(cfg, loaded.entries or {}, subject, found, subject.vm_uuid)
        previous = (loaded.entries or {}).get(subject.vm_uuid)
        verdict = verdict_of(cfg, subject, found, promises, with_peak(need, previous))
        policy = BYPASSED if bypassed else POLICY[(cfg.policy["mode"], verdict.admitted)]
        if policy.recorded:  # a refusal writes nothing: it must stand on a full disk too
            how = HOW_BYPASSED if bypassed else HOW_CHECKED
            kept[subject.vm_uuid] = Entry(subject.vm_uuid, verdict.need.vm_name, verdict.need.total, state.now(),
                                          None, how, max(previous.peak if previous else 0, held_elsewhere))
            ledger.save(path, boot_id, kept, loaded.pending_size)
    if policy.recorded:
        ledger.sync(path)
    return Outcome(subject, verdict, promises, policy, bypassed, loaded.note, waited, tuple(found.dom0.ceilings))
