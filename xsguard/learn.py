"""What xsguard learned about a VM while it ran, kept in the VM's own record for its next start.

xapi deletes a VM's guest metrics at every start, before the hook runs, and the model is
unverified for some guests: what a VM was seen to be (its guest agent naming Windows) and to
hold (dom0's ports for its domain, above the model) is written to ``VM.other_config``
(``model.need.LEARNED_HELD``, ``LEARNED_OS``), which travels with the VM to every host of the
pool and is read with the VM's record by every decision: no extra call. The model only ever
raises a need with it. Written only on a new maximum (``model.need.learned_now``), so that a
VM is written a handful of times in its life, never at every reading.

Callers: ``audit`` (every VM running here, ``remember``); a reader of dom0's ports every few
seconds (xsguard-rrdd) through ``Learner``, which asks xapi only about the VMs whose domain
holds something new.
"""


from . import gather
from .config import Config
from .errors import XapiFailure
from .model.charging import RUNNING, Here
from .model.need import Need, learned_now
from .xapi import Xapi, any_of

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    from .xapi import Record


def remember(api: Xapi, vm_ref: str, vm: "Record", need: Need, held: int,
             guest_metrics: "Optional[Record]") -> "Dict[str, str]":
    """Write what is new about the running VM to its ``other_config``; the keys written.

    Each key is removed then added (xapi's ``add_to_other_config`` refuses a key that exists,
    ``MAP_DUPLICATE_KEY``: then another writer got in between, and its figure stays until the
    next reading compares again). XapiFailure (a login that may not write, the VM gone) is raised.
    """
    written = {}
    for key, value in sorted(learned_now(vm, need, held, guest_metrics).items()):
        api.call("VM.remove_from_other_config", vm_ref, key)
        try:
            api.call("VM.add_to_other_config", vm_ref, key, value)
        except XapiFailure as exc:
            if exc.details[:1] != ["MAP_DUPLICATE_KEY"]:
                raise
            continue
        written[key] = value
    return written


class Learner:
    """``remember`` for every VM running on this host, read after read: xapi is asked about a
    VM (its record, devices and guest metrics, fresh) only when what dom0 holds for its domain
    changed since the last look, a few times in a domain's life (its devices connecting)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.looked: Dict[str, Tuple[int, int]] = {}  # vm uuid -> (domid, ports held) when last looked at

    def observe(self, api: Xapi, here: "Dict[str, Here]", held_by_domid: "Dict[int, int]",
                control: "Optional[Record]", backend: "Dict[str, str]") -> "List[Dict[str, Any]]":
        """Look at the running VMs (``here``: by uuid) whose domain holds something new; what was
        written, one dict per VM (``vm_uuid``, ``vm_name``, ``keys``). XapiFailure is raised and
        the VMs not looked at are looked at the next time."""
        now = {u: (h.domid, held_by_domid.get(h.domid, 0)) for u, h in here.items()
               if h.state == RUNNING and h.domid is not None}
        self.looked = {u: mark for u, mark in self.looked.items() if now.get(u) == mark}
        changed = sorted(u for u in now if u not in self.looked)
        if not changed:
            return []
        facts = gather.host_facts(control, backend)
        profile = gather.profile_of(self.cfg)
        learned = []
        for ref, described in gather.describe(api, api.where("VM", any_of("uuid", changed))).items():
            vm = described.vm
            uuid = str(vm.get("uuid", ""))
            if uuid not in now:
                continue
            try:
                need = gather.predict(facts, profile, described)
            except ValueError:  # a record the model cannot read: charged what dom0 holds, nothing to learn
                self.looked[uuid] = now[uuid]
                continue
            written = remember(api, ref, vm, need, now[uuid][1], described.guest_metrics)
            self.looked[uuid] = now[uuid]
            if written:
                learned.append({"vm_uuid": uuid, "vm_name": vm.get("name_label", ""), "keys": written})
        return learned
