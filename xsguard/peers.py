"""The other hosts of the pool, asked through their own xsguard (host plugin), all at once.

Each host answers for itself, in its own dom0, with its own ledger and config: ``check``
where a VM would fit, ``status`` what a host has left. A host that does not answer before
the deadline is left out of what fits and listed as unreachable.
"""

import json
import threading

from .config import Config
from .deadline import Deadline
from .errors import BadArgument, PermissionDenied, wire_error
from .model import need as need_model
from .model.placement import (
    Evacuee,
    Plan,
    Room,
    absorb,
    evacuation,
    least_free,
    most_room_first,
    tightest,
    xapi_memory,
    xapi_plan,
)
from .namedtuple import NamedTuple
from .xapi import Xapi, quote

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Set, Tuple

    from .xapi import Record

PLUGIN = "xsguard"


class Answer(NamedTuple):
    """One host's answer to one plugin call (``result`` None: it did not answer in time, or failed)."""

    host_ref: str
    host: "Record"
    result: "Optional[Dict[str, Any]]"
    error: "Optional[str]"

    @property
    def host_name(self) -> str:
        return str(self.host.get("name_label", ""))

    @property
    def host_uuid(self) -> str:
        return str(self.host.get("uuid", ""))

    @property
    def reachable(self) -> bool:
        return self.result is not None


def pool_hosts(api: Xapi) -> "Dict[str, Record]":
    """Every host of the pool, by ref: one call."""
    return dict(api.call("host.get_all_records"))


def enabled(hosts: "Dict[str, Record]", exclude: "Set[str]") -> "Dict[str, Record]":
    """The hosts that take new VMs (enabled), but for ``exclude`` (refs)."""
    return {r: h for r, h in hosts.items() if h.get("enabled") and r not in exclude}


def ask(api: Xapi, targets: "Dict[str, Record]", fn: str, args: "Dict[str, str]", deadline: Deadline) -> "List[Answer]":
    """Call ``fn`` of every target host's xsguard plugin in parallel, each on its own connection
    with the caller's session; wait no longer than the deadline. Answers in the targets' order."""
    found: Dict[str, Tuple[Optional[Dict[str, Any]], Optional[str]]] = {}
    lock = threading.Lock()
    denied: List[PermissionDenied] = []  # the login may not call plugins: no host can answer

    def one(ref: str) -> None:
        try:
            with Xapi(api.url, deadline, session_ref=api.session._session, ca_file=api.ca_file) as mine:
                answer: Tuple[Optional[Dict[str, Any]], Optional[str]] = (
                    json.loads(mine.call("host.call_plugin", ref, PLUGIN, fn, args)), None)
        except PermissionDenied as exc:
            denied.append(exc)
            answer = (None, exc.message)
        except Exception as exc:  # noqa: BLE001 - a host that fails is reported, never fatal here
            answer = (None, wire_error(exc).message)
        with lock:
            found[ref] = answer

    threads = [threading.Thread(target=one, args=(ref,), name="ask-%s" % fn, daemon=True) for ref in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline.remaining(), 0.0))
    with lock:
        done = dict(found)
    if denied:
        raise denied[0]
    return [Answer(ref, host, *done.get(ref, (None, "no answer within the deadline"))) for ref, host in targets.items()]


class Elsewhere(NamedTuple):
    """Where a VM fits now among the hosts asked."""

    fits: "List[Room]"
    asked: int
    answered: int


def room_elsewhere(api: Xapi, vm_uuid: str, exclude: "Set[str]", deadline: Deadline,
                   hosts: "Optional[Dict[str, Record]]" = None) -> Elsewhere:
    """Ask every other enabled host's ``check`` for this VM; the hosts that would admit it."""
    targets = enabled(pool_hosts(api) if hosts is None else hosts, exclude)
    answers = ask(api, targets, "check", {"vm_uuid": vm_uuid}, deadline)
    fits = [Room(a.host_name, a.result.get("free_after")) for a in answers
            if a.result is not None and a.result.get("verdict") == "admit"]
    return Elsewhere(most_room_first(fits), len(answers), sum(1 for a in answers if a.reachable))


# the commands' reports

POOL_FIELDS = ("port_limit", "ports_used", "promised", "margin", "ports_free", "irq_limit", "irqs_used",
               "irqs_free")


def pool_report(api: Xapi, deadline: Deadline) -> "Dict[str, Any]":
    """Every host's figures from its own ``status``; a host that does not answer is unreachable."""
    hosts = pool_hosts(api)
    rows = []
    for a in sorted(ask(api, hosts, "status", {}, deadline), key=lambda a: a.host_name):
        row: Dict[str, Any] = {"host_uuid": a.host_uuid, "host_name": a.host_name, "reachable": a.reachable}
        result = a.result or {}
        row.update({k: result.get(k) for k in POOL_FIELDS})
        row["ceiling"] = tightest(result)
        if not a.reachable:
            row["error"] = a.error
        rows.append(row)
    return {"hosts": rows}


def place_report(api: Xapi, vm_key: str, deadline: Deadline) -> "Dict[str, Any]":
    """Every host's verdict for the VM, from its own ``check``, best first; the host it runs on
    is listed as ``resident`` (its dom0 already holds the VM's ports), disabled hosts as ``disabled``."""
    _, vm, _ = api.vm_and_control_domain(vm_key, "")
    need_model.refuse_non_candidate(vm)
    hosts = pool_hosts(api)
    here = str(vm.get("resident_on", ""))
    answers = ask(api, enabled(hosts, {here}), "check", {"vm_uuid": str(vm["uuid"])}, deadline)
    rows = [_unasked(hosts[here], "resident")] if here in hosts else []
    for a in answers:
        result = a.result or {}
        rows.append({"host_uuid": a.host_uuid, "host_name": a.host_name,
                     "verdict": result.get("verdict", "unreachable"), "free": result.get("free"),
                     "free_after": result.get("free_after"), "ceiling": result.get("ceiling"),
                     "need": result.get("need")})
    rows += [_unasked(h, "disabled") for r, h in hosts.items() if not h.get("enabled") and r != here]
    order = {"admit": 0, "refuse": 1, "unreachable": 2, "disabled": 3, "resident": 4}
    rows.sort(key=lambda r: (order.get(r["verdict"], 4), r["free_after"] is None, -(r["free_after"] or 0),
                             r["host_name"]))
    needs = [r.pop("need") for r in rows]
    return {"vm_uuid": vm["uuid"], "vm_name": vm.get("name_label", ""),
            "need": next((n for n in needs if n is not None), None),
            "hosts": rows, "fits": [r["host_name"] for r in rows if r["verdict"] == "admit"]}


def _unasked(host: "Record", verdict: str) -> "Dict[str, Any]":
    """A ``place`` row for a host that is not asked."""
    return {"host_uuid": host.get("uuid"), "host_name": host.get("name_label"), "verdict": verdict, "free": None,
            "free_after": None, "ceiling": None, "need": None}


def find_host(hosts: "Dict[str, Record]", key: str) -> "Tuple[str, Record]":
    """A host by uuid or name."""
    found = [(r, h) for r, h in hosts.items() if key in (h.get("uuid"), h.get("name_label"))]
    if len(found) != 1:
        raise BadArgument("%s host is named or numbered '%s'" % ("no" if not found else "more than one", key), key)
    return found[0]


def evacuate_report(cfg: Config, api: Xapi, host_key: str, deadline: Deadline, ha: bool = False) -> "Dict[str, Any]":
    """Would ``host.evacuate`` of ``host_key`` move its running VMs: xapi's own memory-only plan,
    then each destination's verdict on the VMs xapi sends it. ``ha``: for every host, would the
    others absorb its HA-protected VMs (as if it failed), as xsguard would admit them one by one."""
    hosts = pool_hosts(api)
    sources = sorted(hosts.items(), key=lambda kv: str(kv[1].get("name_label"))) if ha else [find_host(hosts, host_key)]
    asked = enabled(hosts, set() if ha else {sources[0][0]})
    statuses = {a.host_ref: a for a in ask(api, asked, "status", {}, deadline)}
    running = api.where("VM", " or ".join("field \"resident_on\" = %s" % quote(ref) for ref, _ in sources))
    guests = {ref: vm for ref, vm in running.items() if not vm.get("is_control_domain")
              and vm.get("power_state") == "Running" and (not ha or vm.get("ha_restart_priority") == "restart")}
    needs = _needs_everywhere(cfg, api, guests, hosts)
    plans = []
    for source_ref, source in sources:
        free = {str(a.host.get("name_label")): least_free(a.result) for ref, a in statuses.items()
                if a.result is not None and ref != source_ref}
        unreachable = [a.host_name for r, a in statuses.items() if r != source_ref and not a.reachable]
        mine = {ref: vm for ref, vm in guests.items() if vm.get("resident_on") == source_ref}
        if ha:
            plan = absorb([(str(vm["uuid"]), str(vm.get("name_label", "")), needs[ref]) for ref, vm in mine.items()],
                          free)
        else:
            plan = evacuation(xapi_plan(_evacuees(mine, needs), _free_memory(api, asked)), free)
        plans.append(_plan_json(str(source.get("name_label", "")), plan, unreachable, ha))
    return {"hosts": plans} if ha else plans[0]


XAPI_STOPS = ("xapi migrates each VM where its plan says and never re-places one a hook refused; "
              "the first refused migration stops the evacuation")


def _evacuees(vms: "Dict[str, Record]", needs: "Dict[str, Dict[str, int]]") -> "List[Evacuee]":
    """The VMs as xapi's plan sees them, in the order xapi lists them."""
    return [Evacuee(str(vm["uuid"]), str(vm.get("name_label", "")), xapi_memory(vm), needs[ref])
            for ref, vm in vms.items()]


def _free_memory(api: Xapi, hosts: "Dict[str, Record]") -> "List[Tuple[str, int]]":
    """Each host's free memory as xapi's evacuation plan counts it (``host.compute_free_memory``)."""
    return [(str(h.get("name_label", "")), int(api.call("host.compute_free_memory", ref)))
            for ref, h in hosts.items()]


def _plan_json(host_name: str, plan: Plan, unreachable: "List[str]", ha: bool) -> "Dict[str, Any]":
    result: Dict[str, Any] = {"host_name": host_name, "fits": plan.fits, "moves": [m._asdict() for m in plan.moves],
                              "refused": plan.refused}
    if not ha:
        result["planned_by"] = "xapi"
        result["no_memory"] = plan.unplaced
        result["note"] = XAPI_STOPS
    if unreachable:
        result["unreachable"] = sorted(unreachable)
    return result


def _needs_everywhere(cfg: Config, api: Xapi, guests: "Dict[str, Record]", hosts: "Dict[str, Record]"
                      ) -> "Dict[str, Dict[str, int]]":
    """Each guest's need on each host (by host name), as a start's is computed there from its
    devices and that host's dom0 vCPUs: a few calls whatever the number of VMs."""
    from .gather import describe, host_facts, predict, profile_of

    if not guests:
        return {}
    controls = api.where("VM", "field \"is_control_domain\" = \"true\"")
    by_host = {c.get("resident_on"): c for c in controls.values()}
    profile = profile_of(cfg)
    facts = {hr: host_facts(by_host.get(hr), {}) for hr in hosts}
    return {ref: {str(h.get("name_label")): predict(facts[hr], profile, described).total for hr, h in hosts.items()}
            for ref, described in describe(api, guests).items()}
