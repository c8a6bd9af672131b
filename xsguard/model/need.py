"""What a VM will hold in dom0 once fully up: event channels, as a breakdown by consumer.

Pure: it reads XenAPI records (as the XML-RPC client returns them, integers as strings) and
facts about the host, and charges what the VM will hold once fully up: PV disk and network
channels count even though they appear only once the guest's PV drivers connect. How many
queues a guest may ask for is the profile's queue policy (``vif_queues``, ``vbd_rings``).
"""

from ..errors import NotACandidate
from ..namedtuple import NamedTuple
from .profiles import AUTO, BLKBACK, TAPDISK, Profile

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence
    Record = Dict[str, Any]



class Line(NamedTuple):
    """One consumer of dom0 ports: who binds them, how many, and why."""

    consumer: str
    ports: int
    why: str


class HostFacts(NamedTuple):
    """What the model needs to know about the host's dom0."""

    dom0_vcpus: int
    netback_max_queues: "Optional[int]" = None  # /sys/module/xen_netback/parameters/max_queues
    netback_split: "Optional[bool]" = None  # .../separate_tx_rx_irq
    blkback_max_queues: "Optional[int]" = None  # /sys/module/xen_blkback/parameters/max_queues
    vbd_backend: "Optional[str]" = None  # the disk backend found running in dom0 (probes.storage_backend)


class Need(NamedTuple):
    """A VM's breakdown and its total."""

    vm_uuid: str
    vm_name: str
    domain_type: str
    vcpus: int
    profile: str
    lines: "List[Line]"

    @property
    def total(self) -> int:
        return sum(line.ports for line in self.lines)

    def largest(self, n: int = 3) -> "List[Line]":
        """The n consumers that cost the most, largest first (zero-cost lines left out)."""
        costly = [line for line in self.lines if line.ports > 0]
        return sorted(costly, key=lambda line: -line.ports)[:n]

    def as_json(self) -> "Dict[str, Any]":
        return {
            "vm_uuid": self.vm_uuid,
            "vm_name": self.vm_name,
            "domain_type": self.domain_type,
            "vcpus": self.vcpus,
            "profile": self.profile,
            "total": self.total,
            "breakdown": [
                {"consumer": ln.consumer, "ports": ln.ports, "why": ln.why} for ln in self.lines
            ],
        }


def as_int(value: "Any", field: str) -> int:
    """XenAPI sends int64 fields as strings over XML-RPC: read either."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError("field %s is not an integer: %r" % (field, value))


def effective_domain_type(vm: "Record") -> str:
    """The domain type a start creates: ``unspecified`` is derived as xapi does."""
    declared = vm.get("domain_type") or "unspecified"
    if declared == "unspecified":
        return "pv" if vm.get("HVM_boot_policy", "") == "" else "hvm"
    return declared


def refuse_non_candidate(vm: "Record") -> None:
    """Raise NotACandidate for records that are never started as guests."""
    name = vm.get("name_label", "")
    for flag, what in (
        ("is_control_domain", "a control domain (dom0 or a driver domain)"),
        ("is_a_template", "a template"),
        ("is_a_snapshot", "a snapshot"),
    ):
        if vm.get(flag):
            raise NotACandidate(
                "VM '%s' is %s, not a VM that starts: nothing to admit" % (name, what),
                vm.get("uuid", ""),
            )


LEARNED_HELD = "xsguard-held-ports"  # VM.other_config: the most dom0 was seen holding for its domain
LEARNED_OS = "xsguard-guest-os"  # VM.other_config: what its guest agent named as its OS, when Windows
LEARNED_DIGITS = 9  # a learned figure longer than this is no figure dom0 can hold: ignored


def learned_held(vm: "Record") -> int:
    """The most dom0 was seen holding for one of the VM's domains, on any host (0: none known).

    xsguard writes it (``LEARNED_HELD`` in ``VM.other_config``); the VM's owner can write it
    too, so it only ever raises a need: a figure below the model's changes nothing, and one
    that is not a whole number is ignored.
    """
    text = str((vm.get("other_config") or {}).get(LEARNED_HELD, "")).strip()
    digits = 0 < len(text) <= LEARNED_DIGITS and all(c in "0123456789" for c in text)
    return int(text) if digits else 0


def learned_os(vm: "Record") -> str:
    """What the VM's guest agent said of its OS when it last ran (``LEARNED_OS``), or ""."""
    return str((vm.get("other_config") or {}).get(LEARNED_OS, ""))


def learned_now(vm: "Record", need: Need, held: int, guest_metrics: "Optional[Record]") -> "Dict[str, str]":
    """The ``VM.other_config`` keys to write after seeing the VM run: only a new maximum.

    ``need``: the VM's need as charged now (a figure learned earlier included); ``held``: what
    dom0 holds for its running domain. What dom0 holds is kept only above that need, and what
    its guest agent says of its OS only when it names Windows and nothing learned does yet.
    """
    updates = {}
    if held > need.total:
        updates[LEARNED_HELD] = str(held)
    windows = guest_metrics_name_windows(guest_metrics)
    if need.domain_type == "hvm" and windows and not names_windows(learned_os(vm)):
        updates[LEARNED_OS] = windows_said(guest_metrics)
    return updates


LEARNED_OS_CHARS = 120  # of the guest agent's words kept


def names_windows(text: str) -> bool:
    lowered = text.lower()
    return "windows" in lowered or "microsoft" in lowered


def windows_pv_drivers(vm: "Record", domain_type: str, guest_metrics: "Optional[Record]") -> "Optional[str]":
    """Why the guest binds a netback control ring per VIF (only Windows' PV drivers do), or None.

    Evidence (shared/reference/evtchn-accounting.md, section 3): the control ring is bound by
    Windows' xenvif; Linux netfront does not use it. A PV-family guest is never Windows. Of
    an HVM guest's settings only ``platform:viridian=true`` counts (Hyper-V enlightenments,
    which xapi's Windows templates set; a Linux HVM guest made from an "other media" template
    may carry it too, and is charged the ring on the safe side); ``platform:device_id`` does
    not, as XenServer 8 sets ``0001`` on Linux HVM templates too. Guest metrics naming Windows
    count as well, and so does what they named when the VM last ran (``LEARNED_OS``): xapi
    deletes a VM's guest metrics at every start (xen-api ocaml/xapi/xapi_vm.ml, ``start``:
    ``Xapi_vm_helpers.delete_guest_metrics``, line 338), before the hook runs. Guest metrics naming
    another OS never remove the ring: the guest writes them itself, and an under-charge
    breaks other VMs' devices.
    """
    if domain_type != "hvm":
        return None
    platform = vm.get("platform") or {}
    if str(platform.get("viridian", "")).lower() == "true":
        return "Windows: platform:viridian"
    if guest_metrics_name_windows(guest_metrics):
        return "Windows: its guest agent says so"
    if names_windows(learned_os(vm)):
        return "Windows: its guest agent said so when it last ran (other_config:%s)" % LEARNED_OS
    return None


def guest_metrics_name_windows(guest_metrics: "Optional[Record]") -> bool:
    """Whether a VM_guest_metrics record's ``os_version`` names Windows (its guest agent says so)."""
    os_version = (guest_metrics or {}).get("os_version") or {}
    return names_windows(" ".join(str(v) for v in os_version.values()))


def windows_said(guest_metrics: "Optional[Record]") -> str:
    """What to keep of a guest agent naming Windows: its OS name (up to the first ``|``, where
    Windows' agent appends its paths) if that names it, else ``windows``."""
    name = str(((guest_metrics or {}).get("os_version") or {}).get("name", "")).split("|")[0].strip()
    name = name[:LEARNED_OS_CHARS]
    return name if names_windows(name) else "windows"


def vm_need(
    vm: "Record",
    vbds: "Sequence[Record]",
    vifs: "Sequence[Record]",
    host: HostFacts,
    profile: Profile,
    vgpus: "Sequence[Record]" = (),
    guest_metrics: "Optional[Record]" = None,
) -> Need:
    """The breakdown of dom0 event channels ``vm`` will hold on ``host`` under ``profile``."""
    refuse_non_candidate(vm)
    dtype = effective_domain_type(vm)
    hvm = dtype == "hvm"
    vcpus = as_int(vm.get("VCPUs_max", 1), "VCPUs_max")
    if vcpus < 1:
        raise ValueError("VCPUs_max must be at least 1, not %d" % vcpus)
    lines = [Line("xenstore", 1, "xenstore ring (oxenstored)")]
    if profile.console_for_hvm or not hvm:
        lines.append(Line("console", 1, "console ring (xenconsoled)"))
    if hvm:
        qemu = profile.qemu_per_vcpu * vcpus + profile.qemu_fixed
        why = "QEMU device model: %d per vCPU x %d vCPU%s" % (profile.qemu_per_vcpu, vcpus, "s" * (vcpus != 1))
        if profile.qemu_fixed:
            why += " + %d buffered ioreq" % profile.qemu_fixed
        lines.append(Line("qemu-ioreq", qemu, why))
        firmware = (vm.get("HVM_boot_params") or {}).get("firmware", "bios")
        if firmware == "uefi" and profile.varstored_per_vcpu:
            lines.append(
                Line(
                    "varstored",
                    profile.varstored_per_vcpu * vcpus,
                    "UEFI variable store: %d per vCPU" % profile.varstored_per_vcpu,
                )
            )
    lines.extend(_vbd_lines(vbds, hvm, vcpus, host, profile))
    lines.extend(_vif_lines(vifs, vcpus, host, profile, windows_pv_drivers(vm, dtype, guest_metrics)))
    for vgpu in sorted(vgpus, key=lambda r: str(r.get("device", ""))):
        ports = profile.vgpu_per_vcpu * vcpus + profile.vgpu_fixed
        lines.append(
            Line("vgpu %s" % vgpu.get("device", "0"), ports, "vGPU emulator: vCPUs + 1 (estimate)")
        )
    if profile.extra_per_vm:
        lines.append(Line("allowance", profile.extra_per_vm, "site allowance ([need] extra_per_vm)"))
    held = learned_held(vm)
    modelled = sum(line.ports for line in lines)
    if held > modelled:
        lines.append(Line(LEARNED, held - modelled,
                          "dom0 held %d ports for its domain when it last ran, %d more than this breakdown "
                          "(other_config:%s)" % (held, held - modelled, LEARNED_HELD)))
    return Need(
        vm_uuid=vm.get("uuid", ""),
        vm_name=vm.get("name_label", ""),
        domain_type=dtype,
        vcpus=vcpus,
        profile=profile.name,
        lines=lines,
    )


LEARNED = "learned"  # the breakdown line raising a need to what the VM was seen holding


def _device_key(record: "Record", field: str) -> "Any":
    text = str(record.get(field, ""))
    return (0, int(text)) if text.isdigit() else (1, text)


def storage_backend(host: HostFacts, profile: Profile) -> str:
    """The disk backend charged: ``[need] vbd_backend`` if set, else the one found running in
    dom0, else tapdisk3 (XenServer's)."""
    if profile.vbd_backend != AUTO:
        return profile.vbd_backend
    return host.vbd_backend or TAPDISK


def _vbd_rings(vcpus: int, host: HostFacts, profile: Profile) -> int:
    if profile.rings_per_vbd is not None:
        return profile.rings_per_vbd
    if storage_backend(host, profile) == BLKBACK and profile.multi_queue:
        cap = host.blkback_max_queues or host.dom0_vcpus
        if profile.vbd_rings == "backend_max":
            # blkfront asks for its own ``max_queues`` module parameter's rings; blkback
            # grants up to its own ``max_queues`` (dom0's vCPUs by default), whatever the
            # guest's vCPUs (Linux drivers/block/xen-blkback/xenbus.c connect_ring():
            # "multi-queue-num-queues" is refused only above xenblk_max_queues)
            return max(1, cap)
        return max(1, min(vcpus, cap))
    # tapdisk3 serves one ring per VBD whatever the guest asks (evtchn-accounting.md, section 3)
    return 1


def _vbd_lines(
    vbds: "Sequence[Record]", hvm: bool, vcpus: int, host: HostFacts, profile: Profile
) -> "List[Line]":
    lines = []
    rings = _vbd_rings(vcpus, host, profile)
    backend = storage_backend(host, profile)
    shown = "tapdisk3" if backend == TAPDISK else backend
    for vbd in sorted(vbds, key=lambda r: _device_key(r, "userdevice")):
        kind = vbd.get("type", "Disk")
        empty = bool(vbd.get("empty"))
        label = "vbd %s (%s%s)" % (vbd.get("userdevice", "?"), kind, ", empty" if empty else "")
        if hvm and kind in ("CD", "Floppy"):
            lines.append(Line(label, 0, "emulated by QEMU for HVM guests"))
        elif not hvm and kind == "CD" and empty:
            # xenopsd plugs no backend for an empty CD of any guest but HVM: "an empty CDROM
            # drive on PV and PVinPVH guests is simulated by unplugging the whole drive"
            # (xen-api ocaml/xenopsd/xc/xenops_server_xen.ml:4160, ``vbd.backend = None &&
            # domain_type <> Vm.Domain_HVM``; evtchn-accounting.md, section 3)
            lines.append(Line(label, 0, "empty CD of a PV-family guest: xenopsd unplugs the drive"))
        else:
            why = "%s: %d ring%s, once PV drivers connect" % (shown, rings, "s" * (rings != 1))
            if profile.rings_per_vbd is not None:
                why += " (fixed: rings_per_vbd = %d)" % profile.rings_per_vbd
            elif profile.vbd_rings == "backend_max" and backend == BLKBACK:
                why += " (as many as blkback grants: [need] vbd_rings = backend_max)"
            if backend == BLKBACK:
                why += " (%s)" % ("[need] vbd_backend" if profile.vbd_backend == BLKBACK else "the backend dom0 runs")
            lines.append(Line(label, rings, why))
    return lines


def vif_queues(vcpus: int, host: HostFacts, profile: Profile) -> int:
    """Netback queues charged per VIF under the profile's ``vif_queues`` policy.

    ``negotiated``: what an unmodified frontend asks, min(vCPUs, 8, dom0's max_queues) (Linux
    drivers/net/xen-netfront.c netif_init: max_queues defaults to min(8, online CPUs); Windows
    xenvif caps at 8 too). ``backend_max``: all dom0's netback grants, since a guest picks its
    own count with netfront's ``max_queues`` module parameter and netback only refuses more
    than its own ``max_queues`` (drivers/net/xen-netback/xenbus.c connect(): "guest requested
    %u queues, exceeding the maximum"), whose default is dom0's online vCPUs.
    """
    if not profile.multi_queue:
        return 1
    dom0_cap = host.netback_max_queues or host.dom0_vcpus
    if profile.vif_queues == "backend_max":
        return max(1, dom0_cap)
    return max(1, min(vcpus, profile.netback_queue_cap, dom0_cap))


def _vif_lines(
    vifs: "Sequence[Record]", vcpus: int, host: HostFacts, profile: Profile, windows: "Optional[str]"
) -> "List[Line]":
    queues = vif_queues(vcpus, host, profile)
    split = profile.split_event_channels
    if split is None:
        split = True if host.netback_split is None else host.netback_split
    per_queue = 2 if split else 1
    ctrl = {"always": 1, "never": 0}.get(profile.ctrl_ring, 1 if windows else 0)
    ctrl_why = "[need] ctrl_ring = always" if profile.ctrl_ring == "always" else windows
    capped = profile.multi_queue and profile.vif_queues != "backend_max" and queues == profile.netback_queue_cap \
        and queues < min(vcpus, host.netback_max_queues or host.dom0_vcpus)
    lines = []
    for vif in sorted(vifs, key=lambda r: _device_key(r, "device")):
        why = "netback: %d queue%s x %d (%s)" % (
            queues,
            "s" * (queues != 1),
            per_queue,
            "split tx/rx" if split else "shared tx/rx",
        )
        if profile.split_event_channels is not None:
            why = why[:-1] + ": split_event_channels = %s)" % ("yes" if split else "no")
        if capped:
            why += ", capped by netback_queue_cap = %d" % profile.netback_queue_cap
        if profile.vif_queues == "backend_max" and profile.multi_queue:
            why += ", as many queues as dom0's netback grants ([need] vif_queues = backend_max)"
        if ctrl:
            why += " + 1 control ring (%s)" % ctrl_why
        elif windows and profile.ctrl_ring == "never":
            why += ", no control ring though %s (ctrl_ring = never)" % windows
        lines.append(Line("vif %s" % vif.get("device", "?"), queues * per_queue + ctrl, why))
    return lines
