"""The charging rule: what VMs admitted earlier are still owed. Pure.

ports in use = what dom0 holds now + for each admitted VM still alive here, its predicted
need minus what dom0 already holds for its domain (never below 0). An admitted VM whose
start has not produced a domain yet is owed its whole need until a TTL passes; one that was
seen alive and no longer is leaves the ledger. The VM being decided is never charged twice.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple


class Entry(NamedTuple):
    """One admitted start in the ledger."""

    vm_uuid: str
    vm_name: str
    need: int
    admitted_at: float  # wall-clock seconds
    domid: Optional[int]  # the domain it was last seen running as, None before that

    def as_json(self) -> Dict[str, object]:
        return dict(self._asdict())


class Owed(NamedTuple):
    """What one admitted VM is still owed, and why."""

    vm_uuid: str
    vm_name: str
    need: int
    held: int
    owed: int
    state: str  # "starting" (no domain yet) or "running"


class Alive(NamedTuple):
    """A VM's domain on this host, as xapi reports it."""

    domid: int


def settle(
    entries: Dict[str, Entry],
    alive: Dict[str, Alive],
    held_by_domid: Dict[int, int],
    now: float,
    ttl: float,
    candidate: str,
) -> Tuple[Dict[str, Entry], List[Owed]]:
    """The ledger that remains and what each entry in it is owed.

    ``alive`` maps a VM uuid to its domain on this host for the ledger's VMs that run here.
    The candidate's own entry (a reboot, a retried start) is dropped: it is about to be
    decided again.
    """
    kept: Dict[str, Entry] = {}
    owed: List[Owed] = []
    for uuid, entry in entries.items():
        if uuid == candidate:
            continue
        domain = alive.get(uuid)
        if domain is None:
            if entry.domid is not None or now - entry.admitted_at > ttl:
                continue  # it ran and stopped, or its start never produced a domain
            kept[uuid] = entry
            owed.append(Owed(uuid, entry.vm_name, entry.need, 0, entry.need, "starting"))
            continue
        if entry.domid is not None and entry.domid != domain.domid:
            continue  # a different domain: that start was decided again by its own hook
        held = held_by_domid.get(domain.domid, 0)
        if held >= entry.need:
            continue  # fully connected: dom0's count now holds all of it
        kept[uuid] = entry._replace(domid=domain.domid)
        owed.append(Owed(uuid, entry.vm_name, entry.need, held, entry.need - held, "running"))
    return kept, owed
