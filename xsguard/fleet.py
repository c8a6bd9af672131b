"""The pool's VMs and how many more fit, gathered from every host's own xsguard (host plugin), in
dom0 or from a workstation: each host computes needs with its own config and profile."""

from . import peers
from .deadline import Deadline
from .model import capacity as model
from .namedtuple import NamedTuple
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    from .xapi import Record

CANDIDATES = ("field \"is_control_domain\" = \"false\" and field \"is_a_template\" = \"false\""
              " and field \"is_a_snapshot\" = \"false\"")


def targets(api: Xapi, host_key: "Optional[str]") -> "Dict[str, Record]":
    """Every host of the pool, or the one named (uuid or name)."""
    hosts = peers.pool_hosts(api)
    if host_key is None:
        return hosts
    ref, host = peers.find_host(hosts, host_key)
    return {ref: host}


def unanswered(answers: "List[peers.Answer]") -> "List[str]":
    """One line per host that did not answer."""
    return ["host '%s' did not answer: %s" % (a.host_name, a.error) for a in answers if not a.reachable]


class Gathered(NamedTuple):
    """A report (its JSON), what the table shows besides, and the hosts that did not answer."""

    data: "Dict[str, Any]"
    extra: "Dict[str, Any]"
    unreachable: "List[str]"


def vms_report(api: Xapi, deadline: Deadline) -> Gathered:
    """Every VM that can start: its state, its host (where it runs, else its affinity) and what it
    needs there, as that host computes it; a VM with neither, the most any host would charge it."""
    hosts = peers.pool_hosts(api)
    answers = peers.ask(api, hosts, "needs", {}, deadline)
    needs = {a.host_ref: a.result.get("needs", {}) for a in answers if a.result is not None}
    rows = []
    for vm in api.where("VM", CANDIDATES).values():
        uuid = str(vm["uuid"])
        host_ref = next((str(vm[k]) for k in ("resident_on", "affinity") if vm.get(k) in hosts), "")
        if host_ref:
            need = needs.get(host_ref, {}).get(uuid)
        else:
            need = max((n[uuid] for n in needs.values() if uuid in n), default=None)
        rows.append({"vm_uuid": uuid, "vm_name": vm.get("name_label", ""), "power_state": vm.get("power_state", ""),
                     "host_name": hosts[host_ref].get("name_label", "") if host_ref else "",
                     "resident": vm.get("resident_on") == host_ref if host_ref else False, "need": need})
    rows.sort(key=lambda r: (r["vm_name"], r["vm_uuid"]))
    return Gathered({"vms": rows}, {}, unanswered(answers))


def capacity_report(api: Xapi, args: "Dict[str, str]", host_key: "Optional[str]", deadline: Deadline) -> Gathered:
    """Each host's answer to ``capacity`` and the pool's total; each host's need (by name) for the table."""
    answers = peers.ask(api, targets(api, host_key), "capacity", args, deadline)
    answers.sort(key=lambda a: a.host_name)
    rows, needs = [], {}
    shape = None
    for a in answers:
        result = a.result or {}
        shape = shape or result.get("shape")
        rows.append({"host_uuid": a.host_uuid, "host_name": a.host_name, "fits": result.get("fits"),
                     "ceiling": result.get("ceiling") if a.reachable else "unreachable",
                     "remedies": result.get("remedies", [])})
        if a.reachable:
            needs[a.host_name] = result.get("need")
    known = [n for n in needs.values() if n is not None]
    return Gathered({"shape": shape, "need": max(known) if known else None, "hosts": rows,
                     "total": model.total([r["fits"] for r in rows])}, needs, unanswered(answers))
