"""What a simulated guest holds in dom0: the simulator's one table, each figure with its evidence.

Most tests take the simulator as the truth, so what a simulated guest binds must come from
evidence and never from xsguard's model: this module imports nothing of xsguard outside
``xsguard.sim``. Each figure says where it comes from: ``measured`` (a capture under
``tests/fixtures``), ``read`` (a source line), ``seed`` (the 2013 post on XenServer 6.x quoted
in ``evtchn-accounting.md``, "The seed's figures"), or ``UNVERIFIED``.

A guest's ports come in two steps, as on a real host: ``at_build`` when its domain is built
(xenstore, console, device model), ``at_connect`` when its PV drivers connect (one entry per
disk and NIC, each bound or failed as a whole). What the guest asks for is the guest's own
choice (``sim.set_guest``): ``queues`` and ``rings`` as Linux's netfront and blkfront
``max_queues`` module parameters set them, ``ctrl_ring`` as Windows' xenvif binds it.
"""

from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

from .store import ApiError

FIXTURES = "tests/fixtures/xen417-pv-dom0-2vcpu"


class Stack(NamedTuple):
    """How one host's toolstack and backends bind a guest's channels in dom0."""

    name: str
    console_for_hvm: bool  # xenconsoled binds a console ring for HVM guests too
    qemu_per_vcpu: int  # HVM device model: ports per vCPU
    qemu_fixed: int  # HVM device model: ports whatever the vCPUs
    varstored_per_vcpu: int  # UEFI HVM guests
    disk_backend: str  # "tapdisk3": one ring per disk; "blkback": one per queue
    multi_queue: bool  # netback (and blkback) serve more than one queue per device
    split_tx_rx: bool  # netback binds a tx and an rx channel per queue
    ctrl_ring: bool  # netback offers the control ring Windows' xenvif binds
    evidence: Dict[str, str]


XS8_EVIDENCE = {
    "xenstore": "1 per guest, measured: %s/table.md, every case (evtchn:oxenstored)" % FIXTURES,
    "console": "1 per guest whatever its type, measured for PV and PVH: %s/table.md (evtchn:xenconsoled); "
               "for HVM read: XenServer writes console keys for every domain type (evtchn-accounting.md, 3), "
               "not measured: UNVERIFIED for HVM" % FIXTURES,
    "qemu": "V + 1 for HVM, read: one ioreq channel per vCPU and one buffered ioreq (evtchn-accounting.md, 3); "
            "the xl-run HVM guest measured there held V + 2, the extra one for xl's keyboard backend, which "
            "XenServer's QEMU does not run: UNVERIFIED on XenServer",
    "varstored": "V for UEFI HVM, read: varstored's ioreq server, one per vCPU (xapi-project/varstored); "
                 "not measured: UNVERIFIED",
    "disk": "tapdisk3: 1 ring per disk whatever the guest asks, read (evtchn-accounting.md, 3); the closest "
            "capture, a qdisk disk, took 1 port at 1 and 2 vCPUs: "
            "tests/fixtures/xen417-pvh-qdisk-dom0-2vcpu/table.md",
    "empty_cd": "0 for an empty CD of any guest but HVM, read: xen-api "
                "ocaml/xenopsd/xc/xenops_server_xen.ml:4160 (vbd.backend = None && domain_type <> Domain_HVM)",
    "emulated": "0 for CD drives and floppies of HVM guests, read: QEMU emulates them (evtchn-accounting.md, 3)",
    "vif": "queues x 2 (tx and rx), queues = min(what the guest asks, dom0's netback max_queues); measured: "
           "%s/table.md (v2d1n1: 2 queues, 4 ports; v4d1n1 on a 2-vCPU dom0: still 2). The guest asks "
           "min(8, its vCPUs) unless its netfront max_queues says otherwise, read: Linux "
           "drivers/net/xen-netfront.c netif_init" % FIXTURES,
    "ctrl": "+1 per NIC for a guest whose drivers bind the control ring (Windows xenvif), read: "
            "evtchn-accounting.md, 3; Linux netfront binds none",
}

# The HVM figures (a console, QEMU V + 1, varstored V) are UNVERIFIED: no capture of an HVM guest on
# XenServer; they restate what xsguard's model assumes (model/profiles.py XS8), so a test that
# relies on them checks the model against itself. XS8_HVM_MORE is the what-if that they are low.
XS8 = Stack("xs8", True, 1, 1, 1, "tapdisk3", True, True, True, XS8_EVIDENCE)
XS8_HVM_MORE = XS8._replace(name="xs8-hvm-more", qemu_per_vcpu=2, qemu_fixed=2, varstored_per_vcpu=2, evidence=dict(
    XS8_EVIDENCE,
    qemu="2V + 2 for HVM: a what-if above the UNVERIFIED V + 1, for the tests that must hold whatever QEMU binds",
    varstored="2V for UEFI HVM: a what-if above the UNVERIFIED V, for the same tests",
))

# The Debian Xen 4.17 host of the captures: kernel blkback for disks, PV and PVH guests only.
XEN417 = Stack("xen417", True, 1, 1, 1, "blkback", True, True, True, dict(
    XS8_EVIDENCE,
    disk="blkback: 1 ring per queue, queues = min(what the guest asks, dom0's blkback max_queues), measured: "
         "%s/table.md (v1d3n0: 3 ports; v2d1n1 and v4d1n1 on a 2-vCPU dom0: 2). The guest asks min(4, its "
         "vCPUs) unless its blkfront max_queues says otherwise, read: Linux drivers/block/xen-blkfront.c "
         "(xen_blkif_max_queues = 4, capped at the CPUs)" % FIXTURES,
))

SEED = "seed (evtchn-accounting.md, \"The seed's figures\")"
XS62_EVIDENCE = {
    "xenstore": "1 per guest, " + SEED,
    "console": "1 for PV guests only, " + SEED,
    "qemu": "2 per HVM vCPU (\"rising to two in XenServer 6.2\"), " + SEED,
    "varstored": "none: no UEFI guests in 2013",
    "disk": "1 per virtual disk, " + SEED,
    "empty_cd": XS8_EVIDENCE["empty_cd"] + "; for 6.x UNVERIFIED",
    "emulated": XS8_EVIDENCE["emulated"],
    "vif": "1 per virtual NIC (one queue, one channel), " + SEED,
    "ctrl": "none: the control ring came with later Windows drivers, UNVERIFIED",
}
XS62 = Stack("xs62", False, 2, 0, 0, "tapdisk3", False, False, False, XS62_EVIDENCE)
XS61 = XS62._replace(name="xs61", qemu_per_vcpu=1, evidence=dict(
    XS62_EVIDENCE, qemu="1 per HVM vCPU before XenServer 6.2, " + SEED))

STACKS: Dict[str, Stack] = {s.name: s for s in (XS8, XS62, XS61, XEN417, XS8_HVM_MORE)}
FRONTEND_NET_QUEUES = 8  # Linux netfront's and Windows xenvif's default cap
FRONTEND_BLK_QUEUES = 4  # Linux blkfront's default max_queues


class Asks(NamedTuple):
    """What the guest's drivers ask for (0: their defaults)."""

    queues: int = 0
    rings: int = 0
    ctrl_ring: bool = False


class Backend(NamedTuple):
    """dom0's backend limits, as its /sys/module parameters say."""

    netback_max_queues: int
    blkback_max_queues: int


def stack_named(name: str) -> Stack:
    if name not in STACKS:
        raise ValueError("unknown stack %r (known: %s)" % (name, ", ".join(sorted(STACKS))))
    return STACKS[name]


def at_build(stack: Stack, domain_type: str, vcpus: int, firmware: str) -> List[str]:
    """The consumers bound when the domain is built: xenstore, console, the HVM device model."""
    hvm = domain_type == "hvm"
    bound = ["xenstore"]
    if not hvm or stack.console_for_hvm:
        bound.append("console")
    if hvm:
        bound += ["qemu"] * (stack.qemu_per_vcpu * vcpus + stack.qemu_fixed)
        if firmware == "uefi":
            bound += ["varstored"] * (stack.varstored_per_vcpu * vcpus)
    return bound


def disk_rings(stack: Stack, vcpus: int, asks: Asks, backend: Backend) -> int:
    if stack.disk_backend == "tapdisk3" or not stack.multi_queue:
        return 1
    wanted = asks.rings or min(FRONTEND_BLK_QUEUES, vcpus)
    return max(1, min(wanted, backend.blkback_max_queues))


def nic_queues(stack: Stack, vcpus: int, asks: Asks, backend: Backend) -> int:
    if not stack.multi_queue:
        return 1
    wanted = asks.queues or min(FRONTEND_NET_QUEUES, vcpus)
    return max(1, min(wanted, backend.netback_max_queues))


def at_connect(stack: Stack, domain_type: str, vcpus: int, vbds: Sequence[Dict[str, Any]],
               vifs: Sequence[Dict[str, Any]], asks: Asks, backend: Backend
               ) -> List[Tuple[str, List[Tuple[str, Any, int, str]]]]:
    """Per device, once the PV drivers connect: (device, [(kind, index, queue, direction)])."""
    hvm = domain_type == "hvm"
    devices: List[Tuple[str, List[Tuple[str, Any, int, str]]]] = []
    rings = disk_rings(stack, vcpus, asks, backend)
    for vbd in sorted(vbds, key=lambda r: str(r.get("userdevice", ""))):
        kind = vbd.get("type", "Disk")
        if hvm and kind in ("CD", "Floppy"):
            continue  # emulated
        if not hvm and kind == "CD" and vbd.get("empty"):
            continue  # xenopsd unplugs the drive
        binder = "vbd" if stack.disk_backend == "tapdisk3" else "blkif"
        devices.append(("vbd %s" % vbd.get("userdevice"),
                        [(binder, vbd.get("userdevice"), r, "") for r in range(rings)]))
    queues = nic_queues(stack, vcpus, asks, backend)
    for vif in sorted(vifs, key=lambda r: str(r.get("device", ""))):
        ports: List[Tuple[str, Any, int, str]] = []
        for q in range(queues):
            if stack.split_tx_rx:
                ports += [("vif", vif.get("device"), q, "tx"), ("vif", vif.get("device"), q, "rx")]
            else:
                ports.append(("vif", vif.get("device"), q, "tx"))
        if asks.ctrl_ring and stack.ctrl_ring:
            ports.append(("ctrl", vif.get("device"), 0, ""))
        devices.append(("vif %s" % vif.get("device"), ports))
    return devices


class Guest:
    """How a guest behaves once started (``sim.set_guest``)."""

    def __init__(self) -> None:
        self.pv_drivers = True
        self.connect_delay = 0.0
        self.queues = 0  # netfront's max_queues; 0: its default, min(vCPUs, 8)
        self.rings = 0  # blkfront's max_queues; 0: its default, min(vCPUs, 4)
        self.ctrl_ring = False  # Windows' xenvif binds a control ring per NIC
        self.os_name = ""  # what its guest agent reports as os_version's name, once its drivers are up

    def update(self, values: Dict[str, Any]) -> None:
        for key, value in values.items():
            if key == "pv_drivers":
                self.pv_drivers = _truth(value)
            elif key == "connect_delay":
                self.connect_delay = float(value)
            elif key == "queues":
                self.queues = int(value)
            elif key == "rings":
                self.rings = int(value)
            elif key == "ctrl_ring":
                self.ctrl_ring = _truth(value)
            elif key == "os_name":
                self.os_name = str(value)
            else:
                raise ApiError("INVALID_VALUE", "guest." + key, value)

    @property
    def asks(self) -> Asks:
        return Asks(self.queues, self.rings, self.ctrl_ring)


def _truth(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "yes", "1")
