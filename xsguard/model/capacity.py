"""How many more VMs of one shape a host admits now, which ceiling stops them, and what the
usual remedies would give: pure arithmetic over the host's ceilings and the shape's need.

Each VM of the shape is admitted as a start is (``verdict.Check``): under every known ceiling,
``limit - margin - used - promised`` must still hold its need. A ceiling whose limit is unknown
is not checked, as at a start.
"""

from ..namedtuple import NamedTuple
from .ceilings import PORT_LIMITS, XEN_PORTS
from .verdict import Check

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple
    Record = Dict[str, Any]


MAX_VCPUS = 512
MAX_DISKS = 255
MAX_VIFS = 64


class Shape(NamedTuple):
    """A VM's shape as an operator says it: what its need follows from."""

    vcpus: int
    disks: int
    vifs: int
    hvm: bool
    uefi: bool

    def as_json(self) -> "Dict[str, Any]":
        return dict(self._asdict())

    def records(self) -> "Tuple[Record, List[Record], List[Record]]":
        """The XenAPI records (VM, VBDs, VIFs) of a VM of this shape, as the need model reads them."""
        vm = {"uuid": "", "name_label": "", "VCPUs_max": str(self.vcpus), "domain_type": "hvm" if self.hvm else "pv",
              "HVM_boot_policy": "BIOS order" if self.hvm else "",
              "HVM_boot_params": {"firmware": "uefi" if self.uefi else "bios"} if self.hvm else {}, "platform": {}}
        vbds = [{"userdevice": str(n), "type": "Disk", "empty": False} for n in range(self.disks)]
        vifs = [{"device": str(n)} for n in range(self.vifs)]
        return vm, vbds, vifs


def shape(vcpus: int, disks: int, vifs: int, hvm: bool, uefi: bool) -> Shape:
    """A shape, or ValueError naming what is out of range."""
    for name, value, low, high in (("vcpus", vcpus, 1, MAX_VCPUS), ("disks", disks, 0, MAX_DISKS),
                                   ("vifs", vifs, 0, MAX_VIFS)):
        if not low <= value <= high:
            raise ValueError("%s must be between %d and %d, not %d" % (name, low, high, value))
    if uefi and not hvm:
        raise ValueError("uefi is an HVM guest's firmware: give hvm too")
    return Shape(vcpus, disks, vifs, hvm, uefi)


def shape_of(vm: "Record", vbds: "List[Record]", vifs: "List[Record]", domain_type: str) -> Shape:
    """The shape of an existing VM (``--like``): its vCPUs, disks (CDs left out), VIFs and firmware."""
    hvm = domain_type == "hvm"
    firmware = (vm.get("HVM_boot_params") or {}).get("firmware", "bios")
    return Shape(int(vm.get("VCPUs_max", 1)), sum(1 for v in vbds if v.get("type", "Disk") == "Disk"), len(vifs),
                 hvm, hvm and firmware == "uefi")


class Room(NamedTuple):
    """One ceiling of a host as it stands: its limit (None: unknown), what is used and promised."""

    ceiling: str
    limit: "Optional[int]"
    used: int
    promised: int
    margin: int


class Fit(NamedTuple):
    """How many more VMs fit (None: no known ceiling stops them) and the ceiling that stops them."""

    fits: "Optional[int]"
    ceiling: "Optional[str]"


def how_many(rooms: "List[Room]", need: int) -> Fit:
    """How many more VMs needing ``need`` each the host admits one after another."""
    if need <= 0:
        return Fit(None, None)
    counted = []
    for room in rooms:
        free = Check(room.ceiling, room.limit, "", "", "", room.used, room.promised, room.margin, 0).free
        if free is not None:
            counted.append((max(free, 0) // need, room.ceiling))
    if not counted:
        return Fit(None, None)
    return Fit(*min(counted, key=lambda c: c[0]))


def remedies(rooms: "List[Room]", need: int, more_vcpus: "Optional[Tuple[int, int]]" = None) -> "List[Dict[str, Any]]":
    """What each usual remedy would give: the FIFO event-channel ABI where the port limit is a
    2-level one, no margin where there is one, and, when ``more_vcpus`` = (dom0 vCPUs, need then)
    changes the need (netback queues follow dom0's vCPUs), that many dom0 vCPUs."""
    found = []
    fifo = PORT_LIMITS["fifo"]
    if any(r.ceiling == XEN_PORTS and r.limit is not None and r.limit < fifo for r in rooms):
        found.append(_remedy("fifo", "the FIFO event-channel ABI instead of 2-level (%d ports; Xen >= 4.4,"
                             " 64-bit dom0, no xen.fifo_events=0)" % fifo,
                             [r._replace(limit=fifo) if r.ceiling == XEN_PORTS else r for r in rooms], need))
    if any(r.margin for r in rooms):
        found.append(_remedy("margin", "[policy] margin = 0 (nothing kept free for dom0 itself)",
                             [r._replace(margin=0) for r in rooms], need))
    if more_vcpus is not None and more_vcpus[1] != need:
        vcpus, then = more_vcpus
        found.append(_remedy("dom0_vcpus", "%d dom0 vCPUs: each VIF gets %s netback queues (dom0's own per-vCPU"
                             " ports not counted)" % (vcpus, "more" if then > need else "fewer"), rooms, then))
    return found


def _remedy(name: str, what: str, rooms: "List[Room]", need: int) -> "Dict[str, Any]":
    fit = how_many(rooms, need)
    return {"remedy": name, "what": what, "need": need, "fits": fit.fits, "ceiling": fit.ceiling}


def total(fits: "List[Optional[int]]") -> int:
    """The pool's total: the sum over the hosts that answered with a number."""
    return sum(f for f in fits if f is not None)
