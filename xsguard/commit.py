"""Commit: the decision under the ledger's lock, and what each verdict leads to.

``POLICY`` says what a verdict leads to under each mode; ``charge`` applies the charging
rule to the ledger; ``verdict`` judges the VM against what dom0 holds and what is promised.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple

from . import state
from .config import Config
from .deadline import PLUGIN_FLOOR
from .gather import Subject, Survey
from .model.ceilings import Ceiling
from .model.charging import Entry, Promise, here_from_records, settle
from .model.need import Need
from .model.verdict import Verdict, judge

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


class Outcome(NamedTuple):
    """A decision and everything behind it."""

    subject: Subject
    verdict: Verdict
    promises: List[Promise]
    policy: Policy
    bypassed: bool
    ledger_note: Optional[str]
    lock_wait: float
    ceilings: Tuple[Ceiling, ...] = ()  # as read for this decision

    @property
    def need(self) -> Need:
        return self.verdict.need


def grace(cfg: Config) -> float:
    """How long a VM whose domain holds its whole need stays in the ledger: twice the longest a
    decision that records may last (a hook's deadline, the plugin's at least ``PLUGIN_FLOOR``)."""
    return 2 * max(cfg.policy["deadline"], PLUGIN_FLOOR)


def charge(cfg: Config, entries: Dict[str, Entry], subject: Subject, found: Survey, candidate: str
           ) -> Tuple[Dict[str, Entry], List[Promise]]:
    """The charging rule applied to this host's ledger: what remains, and what each VM is owed."""
    records = {str(r["uuid"]): r for r in found.on_host.values() if r.get("uuid") in entries}
    here = here_from_records(records, subject.host_ref)
    return settle(entries, here, found.dom0.ports.by_remote_domain, state.now(), cfg.ledger["ttl"], candidate,
                  found.asked_at, set(found.asked) if found.asked is not None else None, grace(cfg))


def verdict_of(cfg: Config, subject: Subject, found: Survey, promises: List[Promise], need: Need) -> Verdict:
    promised = sum(p.owed for p in promises)
    return judge(need, subject.host_name, found.dom0.ceilings, found.dom0.used, promised, cfg.policy["margin"])
