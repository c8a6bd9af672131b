"""What xsguard learned about a VM while it ran, kept in the VM's own record for its next start.

xapi deletes a VM's guest metrics at every start, before the hook runs, and the model is
unverified for some guests: what a VM was seen to be (its guest agent naming Windows) and to
hold (dom0's ports for its domain, above the model) is written to ``VM.other_config``
(``model.need.LEARNED_HELD``, ``LEARNED_OS``), which travels with the VM to every host of the
pool and is read with the VM's record by every decision: no extra call. The model only ever
raises a need with it. Written only on a new maximum (``model.need.learned_now``), so that a
VM is written a handful of times in its life, never at every reading.

Callers: ``audit`` (every VM running here). Any reader of dom0's ports per domain can call
``remember`` with a VM's need as charged now and what dom0 holds for it.
"""

from typing import Dict, Optional

from .errors import XapiFailure
from .model.need import Need, learned_now
from .xapi import Record, Xapi


def remember(api: Xapi, vm_ref: str, vm: Record, need: Need, held: int,
             guest_metrics: Optional[Record]) -> Dict[str, str]:
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
