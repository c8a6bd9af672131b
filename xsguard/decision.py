"""The one path of a decision: ``gather`` before the lock, ``commit`` under it.

The hooks, the host plugin and the command all come here and differ only in whether the
outcome is recorded: ``evaluate`` answers; ``admit`` answers and, as ``POLICY`` says,
records the VM in the ledger under its lock. Every xapi call and dom0's probes happen in
``gather``; ``commit`` is given no xapi handle.
"""


from . import commit, gather
from .commit import Outcome
from .config import Config
from .deadline import Deadline
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


def evaluate(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: "Optional[str]" = None) -> Outcome:
    """Would ``vm_key`` be admitted on the host now: the same reading as ``admit``, nothing recorded."""
    return commit.evaluate(cfg, gather.gather(cfg, api, vm_key, deadline, host_uuid))


def admit(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline, host_uuid: "Optional[str]" = None,
          progress: "Optional[Dict[str, Any]]" = None, candidate_domid: "Optional[int]" = None,
          held_elsewhere: int = 0) -> Outcome:
    """Decide ``vm_key`` on the host and, as ``POLICY`` says, record it in the ledger.

    ``candidate_domid``: the VM's own new domain (a resume). ``progress`` receives the VM's need
    as soon as it is known, for a caller that must charge it if the decision fails.
    ``held_elsewhere``: what its domain holds in the dom0 it migrates from; it is charged the
    larger of that and its need.
    """
    gathered = gather.gather(cfg, api, vm_key, deadline, host_uuid, candidate_domid, held_elsewhere)
    if progress is not None:
        progress.update(need=gathered.need.total, vm_name=gathered.need.vm_name)
    return commit.commit(cfg, gathered, deadline)
