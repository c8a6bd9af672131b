"""The charging rule: what VMs admitted earlier are still owed. Pure.

ports in use = what dom0 holds now + for each admitted VM still on this host, its predicted
need minus what dom0 already holds for its domain (never below 0).

- A VM whose start is still under way here (xapi has it scheduled on this host, no domain
  yet) is owed its whole need for as long as xapi says so; when xapi could not be asked, for
  at most a TTL. Times are CLOCK_MONOTONIC seconds, which every process of this boot shares
  and no clock step moves.
- A VM neither running nor starting here (refused by a later hook, its start failed or its
  hook was killed, shut down, migrated away, deleted) leaves the ledger.
- A VM whose domain holds its whole need is owed nothing, and leaves the ledger once it has
  held it for ``grace`` seconds: a decision that read dom0 before the ledger lock, when the VM
  held less, must still find it and charge what that reading lacks, and no decision lives
  longer than its deadline.
- A VM whose domain was seen holding more than its need (a guest that asked for more queues
  than the model predicts) keeps that figure, its peak: from then on it is charged its peak
  minus what it holds now, so that a later decision never counts it at the prediction again
  (its own next start here included: see ``charged``).
- The VM being decided is never charged twice (a reboot, a retried start).
- A VM xapi shows Running here under a domid dom0 holds nothing for is rebooting (its old
  domain is gone, xapi keeps the old domid until the new one exists): charged its whole need,
  and never tied to that old domid.
"""

from ..namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple

RUNNING = "running"
STARTING = "starting"

HOW_CHECKED = "checked"
HOW_BYPASSED = "bypassed"
HOW_UNCHECKED = "unchecked"
HOW_REBUILT = "rebuilt"  # entered from live state when the ledger was lost
HOW_AUDITED = "audited"  # entered by ``xsguard audit``: a running VM seen holding more than its need
HOW_SEEN = "seen"  # entered because xapi showed it arriving here by migration, before its own decision
HOW_REBOOTING = "rebooting"  # entered because xapi showed it Running here while dom0 held nothing for its domain


def undecided_past(entries: "Dict[str, Entry]", now: float, window: float) -> "Dict[str, Entry]":
    """The entries a decision charges: a VM seen scheduled here (``HOW_SEEN``) whose own decision
    may still come (its hook, or the destination's ``admit``, recording it under the same lock) is
    charged only once ``window`` seconds (the longest a decision lasts) have passed since it was
    first seen: two undecided VMs never each refuse the other, and one nobody decided is charged
    by every decision after that."""
    return {u: e for u, e in entries.items() if e.how != HOW_SEEN or now - e.admitted_at > window}


class Entry(NamedTuple):
    """One admitted start in the ledger."""

    vm_uuid: str
    vm_name: str
    need: int
    admitted_at: float  # CLOCK_MONOTONIC seconds of this boot
    domid: "Optional[int]"  # the domain it was last seen running as, None before that
    how: str = "checked"  # HOW_CHECKED, HOW_BYPASSED, HOW_UNCHECKED (let through on error), HOW_AUDITED
    peak: int = 0  # the most dom0 was seen holding for its domain, when that was above ``need``
    covered_at: "Optional[float]" = None  # when its domain was first seen holding all it is charged

    @property
    def charged(self) -> int:
        """What the VM is charged in all: its need, or what it was seen holding if more."""
        return max(self.need, self.peak)

    def as_json(self) -> "Dict[str, object]":
        return dict(self._asdict())


class Here(NamedTuple):
    """What xapi says of a ledger VM on this host: running (with its domid) or starting."""

    state: str
    domid: "Optional[int]" = None


class Promise(NamedTuple):
    """A promise to one admitted VM: its need, what dom0 holds for it, and what is still owed (need - held)."""

    vm_uuid: str
    vm_name: str
    need: int
    held: int
    owed: int
    state: str  # STARTING or RUNNING


def settle(
    entries: "Dict[str, Entry]",
    here: "Optional[Dict[str, Here]]",
    held_by_domid: "Dict[int, int]",
    now: float,
    ttl: float,
    candidate: str,
    asked_at: "Optional[float]" = None,
    asked: "Optional[Set[str]]" = None,
    grace: float = 0.0,
) -> "Tuple[Dict[str, Entry], List[Promise]]":
    """The ledger that remains and what each entry in it is owed.

    ``here`` maps the uuids of ledger VMs that run or start on this host to their state, as
    xapi said at ``asked_at``; an entry made after then is taken as starting whatever ``here``
    says (xapi was asked before it was admitted); one stamped ``asked_at`` (rebuilt from what
    xapi said then) is not; so is one whose VM was not among those ``asked`` about, when only
    some were. None means xapi could not be asked, and every entry younger than the TTL is
    then charged its whole need. The TTL applies only to what xapi was not asked about.
    """
    remaining: Dict[str, Entry] = {}
    promises: List[Promise] = []
    for uuid, entry in entries.items():
        if uuid == candidate:
            continue
        fresh = (asked_at is not None and entry.admitted_at > asked_at) or (asked is not None and uuid not in asked)
        unseen = fresh or here is None  # xapi was not asked about it: starting, for at most the TTL
        state = Here(STARTING) if unseen or here is None else here.get(uuid)
        if state is None:
            continue
        if state.state == STARTING or state.domid is None or state.domid not in held_by_domid:
            # no domain yet, or xapi names one dom0 holds nothing for (a reboot: the old domain is gone;
            # every live domain holds its xenstore channel): charged whole, bound to no domain
            if unseen and now - entry.admitted_at > ttl:
                continue  # a start stuck past the TTL is not charged forever; xapi's word has no TTL
            remaining[uuid] = entry
            promises.append(Promise(uuid, entry.vm_name, entry.charged, 0, entry.charged, STARTING))
            continue
        if entry.domid is not None and entry.domid != state.domid:
            continue  # a later domain of this VM: its own hook decided that start
        held = held_by_domid.get(state.domid, 0)
        if held > entry.need:
            entry = entry._replace(peak=max(entry.peak, held))
        if held >= entry.charged and entry.peak == 0:
            covered_at = now if entry.covered_at is None else entry.covered_at
            if now - covered_at > grace:
                continue  # dom0's live count covers it, in every reading a decision may still hold
            entry = entry._replace(covered_at=covered_at)
        remaining[uuid] = entry._replace(domid=state.domid)
        if entry.charged > held:
            promises.append(Promise(uuid, entry.vm_name, entry.charged, held, entry.charged - held, RUNNING))
    return remaining, promises


def here_from_records(records: "Dict[str, Dict[str, object]]", host_ref: str) -> "Dict[str, Here]":
    """Which of these VM records run or start on this host (records as XenAPI returns them)."""
    here: Dict[str, Here] = {}
    for uuid, rec in records.items():
        try:
            domid = int(str(rec.get("domid", -1)))
        except ValueError:
            domid = -1
        if rec.get("resident_on") == host_ref and rec.get("power_state") in ("Running", "Paused") and domid > 0:
            here[uuid] = Here(RUNNING, domid)
        elif rec.get("scheduled_to_be_resident_on") == host_ref:
            here[uuid] = Here(STARTING)
    return here
