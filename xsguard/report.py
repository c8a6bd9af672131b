"""What ``status``, ``need`` and ``check`` answer, as JSON-ready dicts (the CLI and the plugin share them)."""

import os
import time
from typing import Any, Dict, Optional

from . import dom0 as dom0_mod
from . import engine, ledger, probes
from .ceilings import Ceiling
from .config import Config
from .deadline import Deadline
from .errors import XapiUnreachable
from .promises import Here, here_from_records, settle
from .verdict import Check
from .xapi import Xapi


def status(cfg: Config, api: Optional[Xapi], deadline: Deadline) -> Dict[str, Any]:
    """This dom0's ceilings, usage, promises, free ports, consumers, domains and leaks.

    With ``api`` None (xapi unreachable) the dom0 figures still come, without VM names and
    leaks, and each ledger entry is charged its whole need.
    """
    state = dom0_mod.read(cfg, deadline, detail=True)
    host_uuid = dom0_mod.this_host_uuid(cfg)
    names: Dict[int, Dict[str, str]] = {}
    host_name = ""
    entries, note = ledger.load(cfg.ledger["path"], set_aside=False)
    xapi_note = None
    here: Optional[Dict[str, Here]] = None
    leaked: Optional[Dict[str, int]] = None
    if api is not None:
        try:
            host_ref, host = api.host_by_uuid(host_uuid)
            host_name = host.get("name_label", "")
            on_host = {r["uuid"]: r for r in api.vms_on_host(host_ref).values()}
            live = set()
            for rec in on_host.values():
                domid = int(rec.get("domid", -1))
                running = rec.get("power_state") in ("Running", "Paused")
                if domid >= 0 and running and rec.get("resident_on") == host_ref:
                    live.add(domid)
                    names[domid] = {"vm_uuid": rec["uuid"], "vm_name": rec.get("name_label", "")}
            # a ledger VM neither running nor starting here is not among them: gone, as settle() wants
            here = here_from_records({u: on_host[u] for u in entries if u in on_host}, host_ref)
            leaked = {str(d): n for d, n in sorted(state.ports.leaked(live).items())}
        except XapiUnreachable as exc:
            xapi_note = exc.message
    else:
        xapi_note = "xapi not consulted"
    _, owed = settle(entries, here, state.ports.by_remote_domain, time.time(), cfg.ledger["ttl"], "")
    promised = sum(o.owed for o in owed)
    margin = cfg.policy["margin"]

    def free(ceiling: Ceiling, used: int) -> Optional[int]:
        return Check(ceiling.name, ceiling.limit, ceiling.source, used, promised, margin, 0).free

    by_domain = {}
    for domid, count in sorted(state.ports.by_remote_domain.items()):
        entry: Dict[str, Any] = {"ports": count}
        entry.update(names.get(domid, {}))
        by_domain[str(domid)] = entry
    return {
        "host_uuid": host_uuid,
        "host_name": host_name,
        "port_limit": state.port_ceiling.limit,
        "port_limit_source": state.port_ceiling.source,
        "ports_used": state.ports.ports,
        "ports_free": free(state.port_ceiling, state.ports.ports),
        "irq_limit": state.irq_ceiling.limit,
        "irq_limit_source": state.irq_ceiling.source,
        "irqs_used": state.irqs_used,
        "irqs_free": free(state.irq_ceiling, state.irqs_used),
        "margin": margin,
        "promised": promised,
        "promises": [o._asdict() for o in owed],
        "by_state": state.ports.by_state,
        "by_remote_domain": by_domain,
        "by_consumer": state.irq_table.by_consumer if state.irq_table else {},
        "leaked": leaked,
        "unparsed_lines": [{"line": n, "text": t[:120]} for n, t in state.ports.unparsed[:20]],
        "lsevtchn": state.lsevtchn,
        "notes": [n for n in (note, xapi_note) if n],
        "software": software(),
    }


def software() -> Dict[str, Any]:
    """What runs: Python, xsguard and its dependencies, each with the directory it came from."""
    import platform

    import structlog
    import tenacity

    import xsguard

    found: Dict[str, Any] = {"python": platform.python_version()}
    for module in (xsguard, structlog, tenacity):
        where = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__ or "")))
        found[module.__name__] = {"version": _dist_version(module.__name__, where), "path": where}
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


def need(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline) -> Dict[str, Any]:
    """The VM's breakdown on this host."""
    subject, devices = engine.read_subject(cfg, api, vm_key)
    if devices is None:  # bypassed: still say what it would need
        _, _, control = api.vm_and_control_domain(subject.vm["uuid"], subject.host_ref)
        devices = engine.Devices(*api.devices(subject.vm_ref, subject.vm), control_domain=control)
    backend = probes.backend_params(cfg.dom0["sys_module"])
    result = engine.compute_need(cfg, subject, devices, backend).as_json()
    result["host_name"] = subject.host.get("name_label", "")
    result["bypassed"] = subject.bypassed
    return result


def check(cfg: Config, api: Xapi, vm_key: str, deadline: Deadline) -> Dict[str, Any]:
    """Would the VM be admitted on this host now (nothing recorded)."""
    outcome = engine.decide(cfg, api, vm_key, deadline, record=False)
    if outcome.verdict is None:
        return {"verdict": "admit", "bypassed": True, "vm_uuid": outcome.subject.vm["uuid"],
                "vm_name": outcome.subject.vm.get("name_label", ""), "mode": cfg.policy["mode"],
                "message": "VM has other-config:xsguard=skip: starts are not checked"}
    result = outcome.verdict.as_json()
    result["mode"] = cfg.policy["mode"]
    result["bypassed"] = False
    return result
