"""Human output of the command: short aligned tables.

Names come from xapi, where any VM admin sets them: every text shown passes through
``clean`` (the one escaper, ``model.verdict.escaped``) so that a name cannot forge a line,
move the cursor or reverse the text.
"""


from .denials import operation_of
from .model.verdict import escaped as clean

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence


def _lines(text: str) -> str:
    """``clean`` line by line, keeping the line breaks of a message xsguard wrote."""
    return "\n".join(clean(line) for line in text.split("\n"))


def table(rows: "Sequence[Sequence[Any]]", header: "Sequence[str]") -> str:
    cells = [[clean(c) for c in header]] + [["" if c is None else clean(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _n(value: "Any") -> str:
    return "unknown" if value is None else str(value)


def status(s: "Dict[str, Any]") -> str:
    out = [
        "host %s (%s)" % (clean(s["host_name"] or "?"), clean(s["host_uuid"] or "uuid unknown")),
        "",
        table(
            [
                ["Xen ports", _n(s["port_limit"]), s["ports_used"], s["promised"], s["margin"],
                 _n(s["ports_free"]), s["port_limit_source"]],
                ["Linux IRQs", _n(s["irq_limit"]), s["irqs_used"], s["promised"], s["margin"],
                 _n(s["irqs_free"]), s["irq_limit_source"]],
            ],
            ["ceiling", "limit", "used", "promised", "margin", "free", "source"],
        ),
    ]
    out += ["WARNING: %s" % clean(warning) for warning in s.get("warnings", [])]
    disks = s["storage_backend"]
    out += ["disk backend charged: %s (%s)" % (disks["charged"], "[need] vbd_backend" if disks["configured"]
                                               else clean(disks["evidence"]))]
    out += ["", "refused here (starts, migrations, resumes): %d; let through unchecked (xsguard failed, "
                "on_error = allow): %d%s" % (
        s["refused"], s["unchecked"], "  <- see guard_error in the decision log" if s["unchecked"] else "")]
    if s["promises"]:
        out += ["", "promised to VMs starting or connecting:", table(
            [[p["vm_name"], p["vm_uuid"], p["need"], p["held"], p["owed"], p["state"]] for p in s["promises"]],
            ["vm", "uuid", "need", "held", "owed", "state"])]
    domains = sorted(s["by_remote_domain"].items(), key=lambda kv: -kv[1]["ports"])
    if domains:
        out += ["", "ports by domain (largest first):", table(
            [[d, v["ports"], v.get("vm_name", ""), v.get("vm_uuid", "")] for d, v in domains[:15]],
            ["domid", "ports", "vm", "uuid"])]
        if len(domains) > 15:
            out.append("... %d more domains (--json lists them all)" % (len(domains) - 15))
    consumers = sorted(s["by_consumer"].items(), key=lambda kv: -kv[1])
    out += ["", "IRQs by consumer:", table([[k, v] for k, v in consumers[:12]], ["consumer", "irqs"])]
    if s["leaked"]:
        out += ["", "LEAKED ports (their domain no longer exists):",
                table([[d, n] for d, n in s["leaked"].items()], ["domid", "ports"])]
    for line in s["unparsed_lines"]:
        out.append("unparsed lsevtchn line %d: %s" % (line["line"], clean(line["text"])))
    for note in s["notes"]:
        out.append("note: %s" % _lines(note))
    return "\n".join(out)


def need(n: "Dict[str, Any]") -> str:
    head = "VM %s (%s), %s, %d vCPU%s, profile %s" % (
        clean(n["vm_name"]), clean(n["vm_uuid"]), n["domain_type"], n["vcpus"], "s" * (n["vcpus"] != 1), n["profile"])
    rows = [[b["consumer"], b["ports"], b["why"]] for b in n["breakdown"]]
    rows.append(["total", n["total"], ""])
    return head + "\n\n" + table(rows, ["consumer", "ports", "why"])


def check(c: "Dict[str, Any]") -> str:
    rows = [[k["ceiling"], _n(k["limit"]), k["used"], k["promised"], k["margin"], k["need"],
             _n(k["free_after"]), "yes" if k["fits"] else "NO"] for k in c["checks"]]
    return "%s\n\n%s\n\n%s" % (
        c["verdict"].upper(),
        table(rows, ["ceiling", "limit", "used", "promised", "margin", "need", "free after", "fits"]),
        _lines(c["message"]),
    )


def denials(records: "List[Dict[str, Any]]") -> str:
    rows = [[r["time"][:19].replace("T", " "), operation_of(r), r.get("vm_name", ""),
             r.get("host_name", ""), r.get("need"), _free(r), r.get("ceiling", "")] for r in records]
    return table(rows, ["time (UTC)", "operation", "vm", "host", "need", "free", "ceiling"])


def _free(record: "Dict[str, Any]") -> str:
    for check in record.get("checks", []):
        if check.get("ceiling") == record.get("ceiling"):
            return _n(check.get("free"))
    return "?"


def summary(groups: "List[Dict[str, Any]]") -> str:
    rows = [[g["hour"], g["operation"], g["vm_name"], g["host_name"], g["count"],
             ", ".join("%s %d" % kv for kv in sorted(g["ceilings"].items()))] for g in groups]
    return table(rows, ["hour (UTC)", "operation", "vm", "host", "refused", "ceiling"])


def audit(report: "Dict[str, Any]") -> str:
    """Each VM's prediction next to what dom0 holds; for each ``under``, what would cover it."""
    out = ["host %s: %d exact, %d under, %d over, %d pending" % (
        clean(report["host_name"]), report["exact"], report["under"], report["over"], report["pending"])]
    if report["vms"]:
        out += ["", table([[v["vm_name"], v["vm_uuid"], v["predicted"], v["held"], v["verdict"]]
                           for v in report["vms"]], ["vm", "uuid", "predicted", "held", "verdict"])]
    covers = {v["vm_name"]: v["cover"] for v in report["vms"] if v.get("cover")}
    for name, cover in sorted(covers.items()):
        out.append("%s holds more than the model predicts; would be covered by: %s" % (clean(name), clean(cover)))
    return "\n".join(out)


def pool(p: "Dict[str, Any]") -> str:
    rows = []
    for h in p["hosts"]:
        if not h["reachable"]:
            rows.append([h["host_name"], "unreachable", "", "", "", "", "", "", ""])
            continue
        rows.append([h["host_name"], _n(h["port_limit"]), h["ports_used"], h["promised"], h["margin"],
                     _n(h["ports_free"]), _n(h["irq_limit"]), _n(h["irqs_free"]), _n(h["ceiling"])])
    return table(rows, ["host", "port limit", "used", "promised", "margin", "ports free", "irq limit", "irqs free",
                        "binding"])


def place(p: "Dict[str, Any]") -> str:
    rows = [[h["host_name"], h["verdict"], _n(h["free"]), _n(h["free_after"]), h["ceiling"] or ""]
            if h["verdict"] in ("admit", "refuse") else [h["host_name"], h["verdict"], "", "", ""] for h in p["hosts"]]
    head = "VM %s (%s), needs %s" % (clean(p["vm_name"]), clean(p["vm_uuid"]), _n(p["need"]))
    tail = ("fits on: %s" % ", ".join(clean(f) for f in p["fits"])) if p["fits"] else "no host has room for it now"
    return "%s\n\n%s\n\n%s" % (head, table(rows, ["host", "verdict", "free", "free after", "ceiling"]), tail)


NOTHING_TO_PLAN = "no HA-protected VM (ha_restart_priority = restart) runs on any host: nothing to plan"


def evacuation(e: "Dict[str, Any]") -> str:
    if "hosts" in e:
        if not any(h["moves"] or h["refused"] for h in e["hosts"]):
            return NOTHING_TO_PLAN
        return "\n\n".join(evacuation(h) for h in e["hosts"])
    by_xapi = e.get("planned_by") == "xapi"
    rows = [[m["vm_name"], m["need"], m["to"], "admit" if m["admitted"] else "REFUSED"] for m in e["moves"]]
    rows += [[name, "", "", "REFUSED: no host has room"] for name in ([] if by_xapi else e["refused"])]
    rows += [[name, "", "", "xapi: no host has the memory"] for name in e.get("no_memory", [])]
    if not rows:
        verdict = "no VM runs there (or none is HA-protected): nothing to move"
    elif e["fits"]:
        verdict = "xapi's plan fits: every host it picks admits its VMs" if by_xapi else "the other hosts absorb them"
    elif e.get("no_memory"):
        verdict = "xapi would not start it: %d VM(s) fit no host's memory" % len(e["no_memory"])
    else:
        verdict = "%d VM(s) would be refused" % len(e["refused"])
    out = "evacuate %s: %s" % (clean(e["host_name"]), verdict)
    if rows:
        out += "\n\n" + table(rows, ["vm", "need", "to" + (" (xapi's plan)" if by_xapi else ""), "verdict"])
    if by_xapi and not e["fits"]:
        out += "\n\n" + e["note"]
    if e.get("unreachable"):
        out += "\n\nnot counted (xsguard did not answer): %s" % ", ".join(clean(u) for u in e["unreachable"])
    return out


def vms(v: "Dict[str, Any]") -> str:
    """Every VM: its state, its host (in brackets: its affinity, where it would start) and its need there."""
    rows = [[r["vm_name"], r["vm_uuid"], r["power_state"],
             r["host_name"] if r["resident"] or not r["host_name"] else "(%s)" % r["host_name"], _n(r["need"])]
            for r in v["vms"]]
    return table(rows, ["vm", "uuid", "state", "host", "need"]) + (
        "\n\n(host): the VM's affinity, where it would start" if any(not r["resident"] and r["host_name"]
                                                                      for r in v["vms"]) else "")


def shape(s: "Optional[Dict[str, Any]]") -> str:
    """``1 vCPU, 3 disks, 1 VIF, HVM (BIOS)``"""
    if not s:
        return "unknown shape"

    def some(n: int, what: str) -> str:
        return "%d %s%s" % (n, what, "s" * (n != 1))

    kind = ("HVM (%s)" % ("UEFI" if s["uefi"] else "BIOS")) if s["hvm"] else "PV"
    return "%s, %s, %s, %s" % (some(s["vcpus"], "vCPU"), some(s["disks"], "disk"), some(s["vifs"], "VIF"), kind)


def capacity(c: "Dict[str, Any]", needs: "Dict[str, Any]") -> str:
    """Each host: its need for one more VM of the shape, how many more fit, what stops them, the remedies."""
    rows = []
    for h in c["hosts"]:
        remedies = "; ".join("%s: %s" % (r["remedy"], _n(r["fits"])) for r in h["remedies"])
        rows.append([h["host_name"], _n(needs.get(h["host_name"])), _n(h["fits"]), h["ceiling"] or "none known",
                     remedies])
    out = ["VMs of %s: how many more each host admits now" % shape(c["shape"]), "",
           table(rows, ["host", "need", "fits", "ceiling", "remedies (fits then)"]),
           "", "total: %d more" % c["total"]]
    explained = {r["remedy"]: r["what"] for h in c["hosts"] for r in h["remedies"]}
    if explained:
        out += [""] + ["%s = %s" % (name, clean(what)) for name, what in sorted(explained.items())]
    return "\n".join(out)
