"""Where else a VM fits, and whether the rest of a pool absorbs a host's VMs. Pure.

The figures come from each host's own xsguard (``check`` and ``status``), so the arithmetic
here is the same the hook does there: a VM fits a host when its need is at most what is free.
Where xapi chooses the host (``host.evacuate``), xapi's own memory-only plan comes first
(``xapi_plan``), then xsguard's verdict on each host it picks (``evacuation``).
"""

from ..namedtuple import NamedTuple
from .verdict import ascii_safe

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

MAX_SUGGESTIONS = 3

# how each operation is named in a refusal, and the command that retries it elsewhere
VERBS = {"start": "start", "migrate": "migrate", "resume": "resume"}
WHERE = {"start": "start it on", "migrate": "migrate it to", "resume": "resume it on"}
COMMANDS = {
    "start": "xe vm-start uuid=%s on=%s",
    "migrate": "xe vm-migrate uuid=%s host=%s",
    "resume": "xe vm-resume uuid=%s on=%s",
}


class Room(NamedTuple):
    """One host's answer for one VM: its name and what would be left there after the VM."""

    host_name: str
    free_after: "Optional[int]"  # None: no known limit there


def most_room_first(rooms: "Sequence[Room]") -> "List[Room]":
    """Hosts by what is left after the VM, most first (an unknown limit last), then by name."""
    return sorted(rooms, key=lambda r: (r.free_after is None, -(r.free_after or 0), r.host_name))


def suggestions(operation: str, vm_uuid: str, fits: "Sequence[Room]", asked: int, answered: int) -> "List[str]":
    """The lines that tell the operator where the VM fits now, as commands to paste."""
    best = most_room_first(fits)[:MAX_SUGGESTIONS]
    if best:
        lines = ["- %s a host with room now (most room first):" % WHERE.get(operation, WHERE["start"])]
        lines += ["    " + COMMANDS.get(operation, COMMANDS["start"]) % (vm_uuid, ascii_safe(r.host_name))
                  + "   # %s left after" % ("unknown" if r.free_after is None else r.free_after) for r in best]
        return lines
    if asked == 0:
        return ["- no other enabled host in this pool to %s" % WHERE.get(operation, WHERE["start"])]
    if answered < asked:
        return ["- no other host that answered in time has room for it now (%d of %d did not answer)"
                % (asked - answered, asked)]
    return ["- no other host of the pool has room for it now"]


START_LINE = "- start it on a host with room:"


def reworded(message: str, operation: str, hints: "List[str]") -> str:
    """A refusal's message for ``operation``, its generic "start it elsewhere" line replaced by ``hints``."""
    lines = message.split("\n")
    if lines and operation != "start":
        lines[0] = lines[0].replace("refused to start VM", "refused to %s VM" % VERBS.get(operation, operation), 1)
        if operation == "migrate":
            lines[0] = lines[0].replace(" on host '", " to host '", 1)
    out: List[str] = []
    placed = False
    for line in lines:
        if line.startswith(START_LINE):
            out += hints
            placed = True
        else:
            out.append(line)
    if not placed:
        out += hints
    return "\n".join(out)


class Move(NamedTuple):
    vm_uuid: str
    vm_name: str
    need: int
    to: str
    admitted: bool = True  # xsguard on ``to`` admits it (after the VMs placed there before it)


class Plan(NamedTuple):
    moves: "List[Move]"
    refused: "List[str]"  # VM names
    unplaced: "List[str]" = []  # VM names xapi has no host with the memory for (evacuate fails before any move)

    @property
    def fits(self) -> bool:
        return not self.refused and not self.unplaced


class Evacuee(NamedTuple):
    """A VM to move off a host: what xapi counts of its memory, and its need on each host (by name)."""

    vm_uuid: str
    vm_name: str
    memory: int  # bytes
    needs: "Dict[str, int]"


def xapi_memory(vm: "Dict[str, Any]") -> int:
    """The memory xapi's evacuation plan counts for a VM: dynamic_min for HVM and PV guests,
    static_max for PVH, plus its overhead (xen-api ocaml/xapi/xapi_ha_vm_failover.ml ``vm_memory``,
    ocaml/xapi/memory_check.ml ``vm_compute_start_memory``)."""
    static_max = int(vm.get("memory_static_max") or 0)
    if vm.get("domain_type") in ("pvh", "pv_in_pvh"):
        main = static_max
    else:
        main = int(vm.get("memory_dynamic_min") or static_max)
    return main + int(vm.get("memory_overhead") or 0)


def xapi_plan(vms: "Sequence[Evacuee]",
              free_memory: "Sequence[Tuple[str, int]]") -> "List[Tuple[Evacuee, Optional[str]]]":
    """Where ``host.evacuate`` sends each VM: xapi's memory-only bin packing, ignoring ports.

    As xen-api ocaml/xapi/binpack.ml ``biggest_fit_decreasing`` (used by
    ``Xapi_ha_vm_failover.compute_evacuation_plan`` for ``Xapi_host.compute_evacuation_plan_no_wlb``):
    VMs by memory, largest first (ties in the order given); each onto the host with most free
    memory, which then goes back in line before hosts with as much left; a VM that does not fit
    that host is left out (None). ``free_memory``: (host name, bytes) in xapi's order of hosts.
    """
    bins = sorted(free_memory, key=lambda b: -b[1])  # stable, as OCaml's List.sort
    placed: List[Tuple[Evacuee, Optional[str]]] = []
    for vm in sorted(vms, key=lambda v: -v.memory):
        if not bins or bins[0][1] < vm.memory:
            placed.append((vm, None))
            continue
        name, free = bins.pop(0)
        left = free - vm.memory
        at = next((i for i, b in enumerate(bins) if left >= b[1]), len(bins))  # binpack.ml ``insert``
        bins.insert(at, (name, left))
        placed.append((vm, name))
    return placed


def evacuation(placed: "Sequence[Tuple[Evacuee, Optional[str]]]", free: "Dict[str, Optional[int]]") -> Plan:
    """xsguard's verdict on each host xapi picks (``xapi_plan``), the VMs it sends there in
    turn: a VM is admitted while what is left there (None: no known limit) covers its need; on
    a host missing from ``free`` (its xsguard did not answer) it is not known to be admitted."""
    left = dict(free)
    moves: List[Move] = []
    refused: List[str] = []
    for vm, host in placed:
        if host is None:
            continue
        need = vm.needs.get(host, 0)
        room = left.get(host)
        admitted = host in left and (room is None or need <= room)
        if admitted and room is not None:
            left[host] = room - need
        if not admitted:
            refused.append(vm.vm_name)
        moves.append(Move(vm.vm_uuid, vm.vm_name, need, host, admitted))
    return Plan(moves, refused, [vm.vm_name for vm, host in placed if host is None])


def absorb(vms: "Sequence[Tuple[str, str, Dict[str, int]]]", free: "Dict[str, Optional[int]]") -> Plan:
    """Place ``vms`` (uuid, name, need on each host) as xsguard would admit them one by one:
    largest need first, each onto the host with most room after it; a VM that fits nowhere is refused.

    ``free`` is what each host has left now (None: no known limit); it shrinks as VMs are placed.
    """
    left = dict(free)
    moves: List[Move] = []
    refused: List[str] = []
    for uuid, name, needs in sorted(vms, key=lambda v: (-max(v[2].values(), default=0), v[1], v[0])):
        rooms = [Room(h, None if left[h] is None else left[h] - n)  # type: ignore[operator]
                 for h, n in needs.items() if h in left]
        fitting = [r for r in rooms if r.free_after is None or r.free_after >= 0]
        if not fitting:
            refused.append(name)
            continue
        best = most_room_first(fitting)[0]
        if best.free_after is not None:
            left[best.host_name] = best.free_after
        moves.append(Move(uuid, name, needs[best.host_name], best.host_name))
    return Plan(moves, refused)


def tightest(figures: "Dict[str, Any]") -> "Optional[str]":
    """The ceiling with least left in a ``status`` answer (``xen_ports`` or ``linux_irqs``)."""
    known = [(f, c) for f, c in ((figures.get("ports_free"), "xen_ports"), (figures.get("irqs_free"), "linux_irqs"))
             if f is not None]
    return min(known)[1] if known else None


def least_free(figures: "Dict[str, Any]") -> "Optional[int]":
    """What a ``status`` answer leaves for guests under its tightest ceiling (None: no known limit)."""
    known = [f for f in (figures.get("ports_free"), figures.get("irqs_free")) if f is not None]
    return min(known) if known else None
