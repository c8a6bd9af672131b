"""``xsguard status``: this dom0's ceilings, usage, promises and consumers, and the figures
xsguard-rrdd graphs (``figures``)."""

import os

from . import ledger, probes, state
from .config import Config
from .deadline import Deadline
from .errors import XapiUnreachable
from .gather import Survey, load_entries
from .model.charging import Entry, Here, Promise, here_from_records, settle
from .model.verdict import headroom
from .probes import Dom0
from .report import log_ceiling_unknown
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional


def read(cfg: Config, api: "Optional[Xapi]", deadline: Deadline, patient: bool = False) -> "Dict[str, Any]":
    """This dom0's ceilings, usage, promises, free ports, consumers, domains and leaks.

    ``patient``: nobody waits on the answer (``xsguard status`` in dom0): the kernel log's search
    for the ceilings' boot lines takes its own time (``probes.read_ceilings``).

    With ``api`` None or xapi unreachable, the dom0 figures still come, without VM names and
    leaks, and each ledger entry is charged its whole need.
    """
    no_xapi = without_xapi(cfg)
    host_uuid = "" if no_xapi else probes.this_host_uuid(cfg)
    if no_xapi:
        api = None
    dom0 = probes.read_dom0(cfg, deadline, detail=True, patient=patient)
    log_ceiling_unknown(cfg, dom0.ceilings, host_uuid)
    boot_id = state.boot_id(cfg)
    names: Dict[int, Dict[str, str]] = {}
    host_name = ""
    xapi_note = no_xapi
    leaked: Optional[Dict[str, int]] = None
    entries: Dict[str, Entry] = {}
    note: Optional[str] = None
    here: Optional[Dict[str, Here]] = None
    asked_at = None
    if api is not None:
        try:
            host_ref, host = api.host_by_uuid(host_uuid)
            host_name = host.get("name_label", "")
            asked_at = state.now()
            found = Survey(dom0, api.vms_on_host(host_ref), asked_at, None, host_ref)
            control = next((r for r in found.on_host.values() if r.get("is_control_domain")), None)
            loaded = load_entries(cfg, api, "", control, found, boot_id)
            entries, note = loaded.entries or {}, loaded.note
            records = {str(r["uuid"]): r for r in found.on_host.values()}
            here = here_from_records(records, host_ref)
            for rec in records.values():
                state_here = here.get(str(rec["uuid"]))
                if state_here is not None and state_here.domid is not None:
                    names[state_here.domid] = {"vm_uuid": rec["uuid"], "vm_name": rec.get("name_label", "")}
            leaked = {str(d): n for d, n in sorted(dom0.ports.leaked(names).items())}
        except XapiUnreachable as exc:
            xapi_note = exc.message
            api = None
    if api is None:
        loaded = ledger.load(cfg.ledger.path, boot_id)
        entries = {u: e for u, e in (loaded.entries or {}).items() if e.need != ledger.UNKNOWN_NEED}
        note = loaded.note
        xapi_note = xapi_note or "xapi not consulted"
    _, promises = settle(entries, here, dom0.ports.by_remote_domain, state.now(), cfg.ledger.ttl, "", asked_at)
    shown = figures(dom0, promises, cfg.policy.margin)
    by_domain = {}
    for domid, count in sorted(dom0.ports.by_remote_domain.items()):
        entry: Dict[str, Any] = {"ports": count}
        entry.update(names.get(domid, {}))
        by_domain[str(domid)] = entry
    return {
        "host_uuid": host_uuid,
        "host_name": host_name,
        "port_limit": shown["port_limit"],
        "port_limit_source": dom0.port_ceiling.source,
        "ports_used": shown["ports_used"],
        "ports_free": shown["ports_free"],
        "irq_limit": shown["irq_limit"],
        "irq_limit_source": dom0.irq_ceiling.source,
        "irqs_used": shown["irqs_used"],
        "irqs_free": shown["irqs_free"],
        "margin": shown["margin"],
        "promised": shown["promised"],
        "promises": [p._asdict() for p in promises],
        "by_state": dom0.ports.by_state,
        "by_remote_domain": by_domain,
        "by_consumer": dom0.irq_table.by_consumer if dom0.irq_table else {},
        "leaked": leaked,
        "unparsed_lines": [{"line": n, "text": t[:120]} for n, t in dom0.ports.unparsed[:20]],
        "lsevtchn": dom0.lsevtchn,
        "storage_backend": probes.storage_report(dom0.backend, cfg.need.vbd_backend),
        "notes": [n for n in (note, xapi_note) if n],
        "audit_under": state.counted(cfg, state.COUNT_AUDIT_UNDER),
        "warnings": [c.warning for c in dom0.ceilings if c.warning],
        "refused": state.counted(cfg, state.COUNT_REFUSED),
        "unchecked": state.counted(cfg, state.COUNT_UNCHECKED),
        "over_ceiling": state.counted(cfg, state.COUNT_OVER_CEILING),
        "config_errors": state.counted(cfg, state.COUNT_CONFIG_ERROR),
        "software": software(),
    }


def figures(dom0: Dom0, promises: "List[Promise]", margin: int) -> "Dict[str, Any]":
    """dom0's headroom as ``status`` shows it and xsguard-rrdd graphs it: used, promised, limit, free."""
    promised = sum(p.owed for p in promises)
    return {
        "port_limit": dom0.port_ceiling.limit,
        "ports_used": dom0.ports.ports,
        "ports_free": headroom(dom0.port_ceiling, dom0.ports.ports, promised, margin),
        "irq_limit": dom0.irq_ceiling.limit,
        "irqs_used": dom0.irqs_used,
        "irqs_free": headroom(dom0.irq_ceiling, dom0.irqs_used, promised, margin),
        "margin": margin,
        "promised": promised,
    }


def without_xapi(cfg: Config) -> "Optional[str]":
    """Why xapi's side is unknown on a dom0 without xapi's inventory (plain Xen with xl), else None."""
    path = cfg.dom0.inventory
    if os.path.exists(path):
        return None
    return ("no %s: a Xen dom0 without xapi (xl?); xapi's side is unknown (VM names, leaks)"
            % path)


def software() -> "Dict[str, Any]":
    """What runs: Python, xsguard and its dependencies, each with the directory it came from
    (found without importing them: structlog and tenacity, which pulls in asyncio, are slow to load)."""
    import importlib.util
    import platform

    found: Dict[str, Any] = {"python": platform.python_version()}
    for name in ("xsguard", "structlog", "tenacity"):
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None and spec.origin else ""
        where = os.path.dirname(os.path.dirname(os.path.abspath(origin)))
        found[name] = {"version": _dist_version(name, where), "path": where}
    return found


def _dist_version(name: str, where: str) -> str:
    """The version in ``<name>-<version>.dist-info`` next to the package (3.6 has no importlib.metadata)."""
    if name == "xsguard":
        from . import __version__

        return __version__
    for entry in sorted(os.listdir(where)):
        if entry.startswith(name + "-") and entry.endswith((".dist-info", ".egg-info")):
            return entry[len(name) + 1:].rsplit(".", 1)[0]
    return "unknown"
