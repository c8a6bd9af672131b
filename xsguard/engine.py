"""A decision from end to end: read the VM and the host, measure dom0, charge the ledger, decide.

The hook, the host plugin and the command all come here; they differ only in whether the
outcome is recorded in the ledger.
"""

import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from . import dom0 as dom0_mod
from . import ledger
from . import need as need_mod
from . import verdict as verdict_mod
from .config import Config
from .deadline import Deadline
from .need import HostFacts, Need, as_int
from .profiles import PROFILES, Profile, with_overrides
from .promises import Entry, Owed, here_from_records, settle
from .xapi import Xapi, any_of

BYPASS_KEY = "xsguard"
BYPASS_VALUE = "skip"


def profile_of(cfg: Config) -> Profile:
    """The configured profile with the site's ``[need]`` overrides."""
    n = cfg.need
    return with_overrides(
        PROFILES[cfg.policy["profile"]],
        {
            "vbd_backend": n["vbd_backend"],
            "rings_per_vbd": n["rings_per_vbd"],
            "netback_queue_cap": n["netback_queue_cap"],
            "split_event_channels": n["split_event_channels"],
            "ctrl_ring": n["ctrl_ring"],
            "extra_per_vm": n["extra_per_vm"] or None,
        },
    )


def host_facts(control_domain: Optional[Dict[str, Any]], backend: Dict[str, str]) -> HostFacts:
    """dom0's vCPUs from its xapi record (never from the machine this runs on) and backend caps."""
    vcpus = 1
    if control_domain:
        vcpus = as_int(control_domain.get("VCPUs_at_startup") or control_domain.get("VCPUs_max", 1), "VCPUs")

    def number(key: str) -> Optional[int]:
        text = backend.get(key, "")
        return int(text) if text.isdigit() else None

    split = backend.get("xen_netback.separate_tx_rx_irq")
    return HostFacts(
        dom0_vcpus=max(vcpus, 1),
        netback_max_queues=number("xen_netback.max_queues"),
        netback_split=None if split is None else split.upper() in ("Y", "1"),
        blkback_max_queues=number("xen_blkback.max_queues"),
    )


class Subject(NamedTuple):
    """The VM being decided and the host it would run on, as xapi described them."""

    vm_ref: str
    vm: Dict[str, Any]
    host_ref: str
    host: Dict[str, Any]
    need: Optional[Need]  # None when bypassed

    @property
    def bypassed(self) -> bool:
        return (self.vm.get("other_config") or {}).get(BYPASS_KEY) == BYPASS_VALUE


class Devices(NamedTuple):
    """What the need is computed from besides the VM: its devices and dom0's record."""

    vbds: List[Dict[str, Any]]
    vifs: List[Dict[str, Any]]
    vgpus: List[Dict[str, Any]]
    control_domain: Optional[Dict[str, Any]]


class Outcome(NamedTuple):
    """A decision and everything behind it."""

    subject: Subject
    verdict: Optional[verdict_mod.Verdict]  # None when bypassed
    owed: List[Owed]
    ledger_note: Optional[str]
    lock_wait: float


def read_subject(
    cfg: Config, api: Xapi, vm_key: str, host_uuid: Optional[str] = None
) -> Tuple[Subject, Optional[Devices]]:
    """Read the host, the VM with dom0's record, and the VM's devices: four calls in all.

    The devices are not read for a bypassed VM (None).
    """
    host_ref, host = api.host_by_uuid(host_uuid or dom0_mod.this_host_uuid(cfg))
    vm_ref, vm, control = api.vm_and_control_domain(vm_key, host_ref)
    need_mod.refuse_non_candidate(vm)
    subject = Subject(vm_ref, vm, host_ref, host, None)
    if subject.bypassed:
        return subject, None
    return subject, Devices(*api.devices(vm_ref, vm), control_domain=control)


def compute_need(cfg: Config, subject: Subject, devices: Devices, backend: Dict[str, str]) -> Need:
    facts = host_facts(devices.control_domain, backend)
    return need_mod.vm_need(subject.vm, devices.vbds, devices.vifs, facts, profile_of(cfg), devices.vgpus)


def decide(
    cfg: Config,
    api: Xapi,
    vm_key: str,
    deadline: Deadline,
    record: bool,
    host_uuid: Optional[str] = None,
) -> Outcome:
    """Decide whether ``vm_key`` may start on this host; with ``record``, enter it in the ledger."""
    subject, devices = read_subject(cfg, api, vm_key, host_uuid)
    if devices is None:
        return Outcome(subject, None, [], None, 0.0)
    path = cfg.ledger["path"]
    if not record:
        entries, _ = ledger.load(path, set_aside=False)
        return _evaluate(cfg, api, subject, devices, entries, deadline, None, False, 0.0)
    with ledger.locked(path, deadline) as waited:
        entries, note = ledger.load(path)
        return _evaluate(cfg, api, subject, devices, entries if note is None else None, deadline, note, True,
                         waited)


def _evaluate(
    cfg: Config,
    api: Xapi,
    subject: Subject,
    devices: Devices,
    entries: Optional[Dict[str, Entry]],
    deadline: Deadline,
    note: Optional[str],
    record: bool,
    waited: float,
) -> Outcome:
    candidate = subject.vm["uuid"]
    # dom0 first, xapi second: a VM that gets its domain in between is then charged its whole
    # need minus the nothing dom0 held for it, never its ports twice.
    state = dom0_mod.read(cfg, deadline)
    now = time.time()
    if entries is None:  # the ledger was lost: every VM running or starting here is owed its need
        entries = rebuild(cfg, api, subject, devices, state.backend, now)
    records = api.vms_by_uuid(sorted(u for u in entries if u != candidate))
    need = compute_need(cfg, subject, devices, state.backend)
    here = here_from_records(records, subject.host_ref)
    kept, owed = settle(entries, here, state.ports.by_remote_domain, now, cfg.ledger["ttl"], candidate)
    promised = sum(o.owed for o in owed)
    verdict = verdict_mod.decide(
        need, subject.host.get("name_label", ""), state.ceilings, state.used, promised, cfg.policy["margin"]
    )
    goes_ahead = verdict.admitted or cfg.policy["mode"] != "enforce"
    if record:
        if goes_ahead:
            kept[candidate] = Entry(candidate, need.vm_name, need.total, now, None)
        if kept != entries:
            ledger.save(cfg.ledger["path"], kept)
    return Outcome(subject._replace(need=need), verdict, owed, note, waited)


def rebuild(
    cfg: Config, api: Xapi, subject: Subject, devices: Devices, backend: Dict[str, str], now: float
) -> Dict[str, Entry]:
    """A ledger made from live state: each VM running or starting on this host, at its need.

    Charging then takes off what dom0 already holds for each; three calls, on this rare path.
    """
    host = subject.host_ref
    vms = {ref: r for ref, r in api.vms_on_host(host).items()
           if not r.get("is_control_domain") and ref != subject.vm_ref}
    if not vms:
        return {}
    vbds = api.where("VBD", any_of("VM", sorted(vms)))
    vifs = api.where("VIF", any_of("VM", sorted(vms)))
    facts = host_facts(devices.control_domain, backend)
    profile = profile_of(cfg)
    entries = {}
    for ref, vm in vms.items():
        mine = [r for r in vbds.values() if r.get("VM") == ref], [r for r in vifs.values() if r.get("VM") == ref]
        try:
            total = need_mod.vm_need(vm, mine[0], mine[1], facts, profile).total
        except ValueError:
            continue  # a record the model cannot read: charged what dom0 holds for it
        entries[vm["uuid"]] = Entry(vm["uuid"], vm.get("name_label", ""), total, now, None)
    return entries
