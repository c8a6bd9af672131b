"""Commit: the decision under the ledger's lock, from what ``gather`` read, with no slow I/O.

``commit`` takes no xapi handle: under the lock there is the ledger's read (its appended
charges taken by rename), the charging rule, the verdict and, for a VM that goes ahead,
one write. What appeared in the ledger since ``gather`` read it is charged from what the
ledger says of it, never by asking xapi: a charge of unknown need (a start let through on
error) at the largest need this decision knows of. The status is final when ``commit``
returns; what follows (fsync, the journal, syslog, alerts, hints about other hosts) cannot
change it.
"""

from . import ledger, state
from .config import Config
from .deadline import PLUGIN_FLOOR, Deadline
from .gather import Gathered, Subject, with_peak
from .model.ceilings import Ceiling
from .model.charging import (
    HOW_BYPASSED,
    HOW_CHECKED,
    HOW_REBOOTING,
    HOW_SEEN,
    HOW_UNCHECKED,
    Entry,
    Promise,
    here_from_records,
    settle,
    undecided_past,
)
from .model.need import Need
from .model.verdict import Verdict, judge
from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

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
POLICY: "Dict[Tuple[str, bool], Policy]" = {
    ("enforce", True): Policy(EXIT_GO, "admitted", True, False),
    ("enforce", False): Policy(EXIT_REFUSE, "refused", False, True),
    ("warn", True): Policy(EXIT_GO, "admitted", True, False),
    ("warn", False): Policy(EXIT_LOG_AND_CONTINUE, "warned", True, True),
    ("off", True): Policy(EXIT_GO, "admitted", True, False),
    ("off", False): Policy(EXIT_GO, "would_refuse", True, False),
}
BYPASSED = Policy(EXIT_GO, "bypassed", True, False)
# a reboot of a VM that was running here ([policy] reboot = admit): refusing it would leave the VM
# halted, so it goes ahead, charged, and the host being over a ceiling is logged, counted and alerted
REBOOT_OVER_CEILING = Policy(EXIT_GO, "admitted_over_ceiling", True, True)


class Outcome(NamedTuple):
    """A decision and everything behind it."""

    subject: Subject
    verdict: Verdict
    promises: "List[Promise]"
    policy: Policy
    bypassed: bool
    ledger_note: "Optional[str]"
    lock_wait: float  # seconds waited for the lock
    ceilings: "Tuple[Ceiling, ...]" = ()  # as read for this decision
    lock_held: float = 0.0  # seconds the lock was held

    @property
    def need(self) -> Need:
        return self.verdict.need


def decision_span(cfg: Config) -> float:
    """The longest a decision that records may last: a hook's deadline, the plugin's at least ``PLUGIN_FLOOR``."""
    return max(cfg.policy.deadline, PLUGIN_FLOOR)


def grace(cfg: Config) -> float:
    """How long a VM whose domain holds its whole need stays in the ledger: twice ``decision_span``."""
    return 2 * decision_span(cfg)


def commit(cfg: Config, gathered: Gathered, deadline: Deadline) -> Outcome:
    """Decide under the ledger's lock and, as ``POLICY`` says, record the VM. No xapi call."""
    path = cfg.ledger.path
    with ledger.locked(path, deadline) as waited:
        entered = state.now()
        loaded = ledger.take(path, gathered.boot_id)
        remaining, outcome = decide(cfg, gathered, loaded)
        if outcome.policy.recorded:  # a refusal writes nothing: it must stand on a full disk too
            ledger.save(path, gathered.boot_id, remaining, loaded)
        held = state.now() - entered
    return outcome._replace(lock_wait=waited, lock_held=held)


def evaluate(cfg: Config, gathered: Gathered) -> Outcome:
    """What ``commit`` would decide now, from the ledger as it stands: nothing taken or written."""
    return decide(cfg, gathered, ledger.load(cfg.ledger.path, gathered.boot_id))[1]


def decide(cfg: Config, gathered: Gathered, loaded: ledger.Loaded) -> "Tuple[Dict[str, Entry], Outcome]":
    """The ledger to save and the outcome: the charging rule over ``merged``, then the verdict (pure)."""
    g = gathered
    uuid = g.subject.vm_uuid
    entries, bounded = merged(g, loaded)
    previous = entries.get(uuid)
    here = here_from_records({str(r["uuid"]): r for r in g.found.on_host.values() if r.get("uuid") in entries},
                             g.subject.host_ref)
    found = g.found
    now = state.now()
    charged = undecided_past(entries, now, decision_span(cfg))
    remaining, promises = settle(charged, here, found.dom0.ports.by_remote_domain, now, cfg.ledger.ttl, uuid,
                            found.asked_at, set(found.asked) if found.asked is not None else None, grace(cfg))
    remaining.update({u: e for u, e in entries.items() if u not in charged})  # seen, not yet charged: they remain
    need = with_peak(g.need, previous)
    verdict = judge(need, g.subject.host_name, found.dom0.ceilings, found.dom0.used,
                    sum(p.owed for p in promises), cfg.policy.margin)
    policy = policy_of(cfg, g, verdict)
    remaining = {u: (e._replace(need=ledger.UNKNOWN_NEED) if u in bounded else e) for u, e in remaining.items()}
    if policy.recorded:
        how = HOW_BYPASSED if g.bypassed else HOW_CHECKED
        remaining[uuid] = Entry(uuid, verdict.need.vm_name, verdict.need.total, state.now(), None, how,
                           max(previous.peak if previous else 0, g.held_elsewhere))
    return remaining, Outcome(g.subject, verdict, promises, policy, g.bypassed, loaded.note, 0.0,
                         tuple(found.dom0.ceilings))


def policy_of(cfg: Config, gathered: Gathered, verdict: Verdict) -> Policy:
    """What the verdict leads to: the mode's policy; a bypassed VM goes ahead; a reboot over a
    ceiling goes ahead too unless ``[policy] reboot = check``."""
    if gathered.bypassed:
        return BYPASSED
    policy = POLICY[(cfg.policy.mode, verdict.admitted)]
    if policy.exit == EXIT_REFUSE and gathered.rebooting and cfg.policy.reboot == "admit":
        return REBOOT_OVER_CEILING
    return policy


def merged(gathered: Gathered, loaded: ledger.Loaded) -> "Tuple[Dict[str, Entry], Dict[str, int]]":
    """The ledger read under the lock, completed from what ``gather`` learnt, and the charges of
    unknown need that appeared since, each charged the conservative bound (by uuid).

    A ledger lost since it was gathered is replaced by what was gathered.
    """
    return completed(gathered.charges, loaded, gathered.need.total)


def completed(charges: "Dict[str, Entry]", loaded: ledger.Loaded,
              floor: int) -> "Tuple[Dict[str, Entry], Dict[str, int]]":
    """``merged`` for any caller that read the ledger's charges before the lock (``charges``): those
    of unknown need that appeared since are charged the largest need known, at least ``floor``."""
    if loaded.entries is None:
        entries = ledger.fold(charges, loaded.unfolded)
    else:
        entries = dict(loaded.entries)
        for uuid, charge in charges.items():
            current = entries.get(uuid)
            if current is None and charge.how in (HOW_SEEN, HOW_REBOOTING, HOW_UNCHECKED):
                entries[uuid] = charge  # xapi shows it here without a domain
            elif current is not None and current.need == ledger.UNKNOWN_NEED:
                entries[uuid] = current._replace(need=charge.need)
    unknown = [u for u, e in entries.items() if e.need == ledger.UNKNOWN_NEED]
    if not unknown:
        return entries, {}
    bound = max([floor] + [e.charged for e in entries.values()])
    for uuid in unknown:
        entries[uuid] = entries[uuid]._replace(need=bound)
    return entries, {u: bound for u in unknown}


def charge_unchecked(cfg: Config, vm_uuid: str, progress: "Dict[str, object]") -> str:
    """Charge a VM let through unchecked (its decision failed), without the lock: one line appended
    to the appended charges, at its need if it was known (``progress``), else at the need the next
    decision computes. Says what was charged; OSError if it could not be."""
    need = progress.get("need")
    entry = Entry(vm_uuid, str(progress.get("vm_name", "")), need if isinstance(need, int) else ledger.UNKNOWN_NEED,
                  state.now(), None, HOW_UNCHECKED)
    ledger.append_charge(cfg.ledger.path, state.boot_id(cfg), entry)
    if not isinstance(need, int):
        return "charged its need once the next decision can compute it"
    return "charged its need of %d" % need
