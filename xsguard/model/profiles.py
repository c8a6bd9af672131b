"""Per-device event-channel figures: the built-in profiles and the site's overrides.

``xs8`` follows XenServer 8 / XCP-ng 8.3 (tapdisk3 disks, multi-queue netback, QEMU and
varstored for HVM guests). ``xs62`` and ``xs61`` reproduce the 2013 XenServer 6.x figures:
one port per disk, per NIC and for xenstore, the console for PV guests, and two (6.2) or one
(before 6.2) per HVM vCPU.
"""

from ..namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

AUTO = "auto"  # vbd_backend: the backend found running in dom0 (``xsguard.probes``), else tapdisk3
TAPDISK = "tapdisk"
BLKBACK = "blkback"


class Profile(NamedTuple):
    """How many dom0 ports each consumer of a VM takes."""

    name: str
    console_for_hvm: bool  # xenconsoled binds a console ring for HVM guests too
    qemu_per_vcpu: int  # HVM: ioreq ports per vCPU
    qemu_fixed: int  # HVM: buffered ioreq and the like
    varstored_per_vcpu: int  # UEFI HVM only
    vbd_backend: str  # "tapdisk" (1 ring per VBD), "blkback" (1 ring per queue) or "auto" (as found)
    rings_per_vbd: "Optional[int]"  # fixed rings per VBD, or None to derive from the backend
    netback_queue_cap: int  # frontends cap queues at 8; the 6.x stack had 1
    split_event_channels: "Optional[bool]"  # None: ask dom0 (separate_tx_rx_irq), else as given
    ctrl_ring: str  # "auto" (Windows guests), "always" or "never"
    vgpu_per_vcpu: int  # vGPU emulator: per vCPU (UNVERIFIED estimate)
    vgpu_fixed: int
    extra_per_vm: int  # a site's allowance on top of the model
    vif_queues: str = "negotiated"  # "negotiated" (what the guest's vCPUs ask) or "backend_max" (all dom0 grants)
    vbd_rings: str = "negotiated"  # the same for blkback's rings (tapdisk3 serves one ring whatever)
    multi_queue: bool = True  # the backends serve several queues per device; the 2013 stacks did not


XS8 = Profile(
    name="xs8",
    console_for_hvm=True,  # UNVERIFIED for HVM guests (measured for PV and PVH)
    qemu_per_vcpu=1,  # UNVERIFIED: read, never measured on XenServer (xl's QEMU held V + 2)
    qemu_fixed=1,  # UNVERIFIED, as above
    varstored_per_vcpu=1,  # UNVERIFIED: read, never measured
    vbd_backend=AUTO,
    rings_per_vbd=None,
    netback_queue_cap=8,
    split_event_channels=None,
    ctrl_ring="auto",
    vgpu_per_vcpu=1,
    vgpu_fixed=1,
    extra_per_vm=0,
)

XS62 = XS8._replace(
    name="xs62",
    console_for_hvm=False,
    qemu_per_vcpu=2,
    qemu_fixed=0,
    varstored_per_vcpu=0,
    rings_per_vbd=1,
    netback_queue_cap=1,
    split_event_channels=False,
    ctrl_ring="never",
    vgpu_per_vcpu=0,
    vgpu_fixed=0,
    multi_queue=False,
)

XS61 = XS62._replace(name="xs61", qemu_per_vcpu=1)

PROFILES: "Dict[str, Profile]" = {p.name: p for p in (XS8, XS62, XS61)}


def with_overrides(profile: Profile, overrides: "Dict[str, Any]") -> Profile:
    """The profile with a site's per-device figures (``[need]`` in the config) applied."""
    known = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(known) - set(Profile._fields)
    if unknown:
        raise ValueError("unknown profile field(s): %s" % ", ".join(sorted(unknown)))
    return profile._replace(**known)


class BackendSeen(NamedTuple):
    """What dom0 shows of its disk backends (``xsguard.probes.storage_seen``)."""

    blkback_rings: int  # blkback's rings bound now: ``blkif-backend`` IRQs in /proc/interrupts
    blkback_devices: int  # blkback's devices: /sys/bus/xen-backend/devices/vbd-*
    tapdisk_rings: int  # tapdisk3's rings bound now: ``evtchn:tapdisk`` IRQs
    tapdisk_minors: int  # tapdisks allocated: /sys/class/blktap2/blktap*
    blkback_loaded: bool  # /sys/module/xen_blkback
    blktap_loaded: bool  # /sys/module/blktap (XenServer's tapdisk stack)


def storage_backend_found(seen: BackendSeen) -> "Tuple[Optional[str], str]":
    """The disk backend dom0 runs, and what showed it; None when nothing does.

    A backend in use beats a module merely loaded; both in use (a mixed dom0): blkback, which
    charges a ring per queue where tapdisk3 serves one, so that no VBD is under-charged.
    Nothing in use: the tapdisk stack's module (XenServer loads blkback's too), else blkback's.
    """
    blkback = _said((seen.blkback_rings, "blkif-backend IRQs"), (seen.blkback_devices, "xen-backend vbd devices"))
    tapdisk = _said((seen.tapdisk_rings, "evtchn:tapdisk IRQs"), (seen.tapdisk_minors, "blktap2 minors"))
    if blkback and tapdisk:
        return BLKBACK, "both in use (%s; %s): blkback, the larger charge" % (", ".join(blkback), ", ".join(tapdisk))
    if blkback:
        return BLKBACK, "in use: %s" % ", ".join(blkback)
    if tapdisk:
        return TAPDISK, "in use: %s" % ", ".join(tapdisk)
    if seen.blktap_loaded:
        return TAPDISK, "none in use; module blktap loaded"
    if seen.blkback_loaded:
        return BLKBACK, "none in use; module xen_blkback loaded"
    return None, "no disk backend found in dom0"


def _said(*counts: "Tuple[int, str]") -> "List[str]":
    return ["%d %s" % (n, what) for n, what in counts if n]
