"""The ``xsguard`` command."""

import argparse
import json
import os
import shutil
import sys
from typing import Any, Callable, Dict, List, Optional

from . import __version__, config, denials, report, status, tables
from .deadline import Deadline, backstop
from .errors import BadArgument, XapiUnreachable, XsguardError

EXIT_OK = 0
EXIT_REFUSED = 3
EXIT_FAILED = 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xsguard", description="dom0 event-channel admission control")
    p.add_argument("--version", action="version", version="xsguard %s" % __version__)
    p.add_argument("--config", help="config file (env XSGUARD_CONFIG, default %s)" % config.DEFAULT_PATH)
    p.add_argument("--xapi", help="xapi URL (env XSGUARD_XAPI_URL; default: the local socket)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("status", help="this dom0's ceilings, usage, promises and leaks")
    s.add_argument("--json", action="store_true")
    for name, what in (("need", "a VM's dom0 event channels, by consumer"),
                       ("check", "would a VM be admitted on this host now (exit 0 yes, 3 no, 4 error)")):
        c = sub.add_parser(name, help=what)
        c.add_argument("vm", help="VM uuid or name")
        c.add_argument("--json", action="store_true")
        c.add_argument("--host", help="host name or uuid (default: this dom0's host; elsewhere the VM's"
                                      " resident, else affinity host)")
    _pool_commands(sub)
    d = sub.add_parser("denials", help="refused starts, migrations and resumes from the decision log, newest first")
    d.add_argument("--since", default="24h", help="2h, 30m, 1d or 2026-11-26T08:00 (UTC); default 24h")
    d.add_argument("--vm", help="VM uuid or name")
    d.add_argument("--host", help="host uuid or name")
    d.add_argument("--json", action="store_true")
    d.add_argument("--summary", action="store_true", help="counts by VM, host and hour")
    a = sub.add_parser("audit", help="each VM running here: predicted next to what dom0 holds, and a verdict")
    a.add_argument("--json", action="store_true")
    m = sub.add_parser("simulate", help="serve a simulated pool's XenAPI on 127.0.0.1")
    m.add_argument("--port", type=_port, default=0)
    m.add_argument("--scenario", help="JSON file describing the pool")
    m.add_argument("--bare", action="store_true", help="hosts without xsguard's hook and plugin")
    m.add_argument("--dom0-python", metavar="PATH",
                   help="dom0's interpreter for hooks and plugins (e.g. Python 3.6), xsguard laid out as the RPM does")
    m.add_argument("--empty", action="store_true", help="a pool with no host (default: two hosts, a few VMs)")
    sub.add_parser("demo", help="a short story on a simulated pool: starts until xsguard refuses one")
    return p


def _port(text: str) -> int:
    """A TCP port number for argparse: 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text[:20])
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be between 0 and 65535, not %s" % text[:20])
    return port


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except XsguardError as err:
        sys.stderr.write("xsguard: %s\n" % err.message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _cfg(args: argparse.Namespace) -> config.Config:
    cfg = config.load(args.config)
    url = args.xapi or os.environ.get("XSGUARD_XAPI_URL")
    if url:
        cfg = cfg.with_values({"xapi.url": url})
    return cfg


def _emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(data, sort_keys=True, indent=2) + "\n")
    else:
        sys.stdout.write(human(data) + "\n")


def _with_api(args: argparse.Namespace, fn: Callable[..., Any]) -> Any:
    from .xapi import Xapi

    cfg = _cfg(args)
    deadline = Deadline(max(cfg.policy["deadline"], 30.0))
    with backstop(deadline), Xapi(cfg.xapi["url"], deadline) as api:
        return fn(cfg, api, deadline)


def cmd_status(args: argparse.Namespace) -> int:
    from .xapi import Xapi

    cfg = _cfg(args)
    deadline = Deadline(max(cfg.policy["deadline"], 30.0))
    with backstop(deadline):
        try:
            if status.without_xapi(cfg):
                data = status.read(cfg, None, deadline)  # plain Xen: no xapi to ask
            else:
                with Xapi(cfg.xapi["url"], deadline) as api:
                    data = status.read(cfg, api, deadline)
        except XapiUnreachable as exc:
            data = status.read(cfg, None, deadline)
            data["notes"].append(exc.message)
    _emit(args, data, tables.status)
    return EXIT_OK


def cmd_need(args: argparse.Namespace) -> int:
    data = _with_api(args, lambda cfg, api, dl: _on_host(cfg, api, args, "need", dl)
                     or report.need_report(cfg, api, args.vm, dl))
    _emit(args, data, tables.need)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    data = _with_api(args, lambda cfg, api, dl: _on_host(cfg, api, args, "check", dl)
                     or report.check_report(cfg, api, args.vm, dl))
    _emit(args, data, tables.check)
    return EXIT_OK if data["verdict"] in ("admit", "resident") or data["bypassed"] else EXIT_REFUSED


def cmd_denials(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    try:
        since = denials.parse_since(args.since)
    except ValueError as exc:
        sys.stderr.write("xsguard: %s\n" % exc)
        return 2
    found = denials.read(cfg.log["file"], since=since, vm=args.vm, host=args.host)
    if args.summary:
        _emit(args, denials.summary(found.records), tables.summary)
    else:
        _emit(args, found.records, tables.denials)
    if found.corrupt:
        sys.stderr.write("xsguard: skipped %d corrupt line(s) in %s\n" % (found.corrupt, cfg.log["file"]))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from . import audit

    report = _with_api(args, audit.audit)
    covers = {f.vm_name: f.cover for f in report.findings if f.cover}
    _emit(args, report.as_json(), lambda data: tables.audit(data, covers))
    return EXIT_OK


NO_SIMULATOR = ("xsguard: the simulated pool is not installed here (dom0's package leaves it out):"
                " run `xsguard %s` where xsguard was installed with pip, or from a checkout\n")


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        from .sim import scenario
        from .sim.server import Simulator, serve
    except ImportError:
        sys.stderr.write(NO_SIMULATOR % "simulate")
        return 2
    if args.empty and args.scenario:
        sys.stderr.write("xsguard: --empty and --scenario exclude each other\n")
        return 2
    sim = Simulator(port=args.port, install_xsguard=not args.bare, interpreter=_dom0_python(args.dom0_python))
    try:
        if args.scenario:
            built = scenario.load_file(sim.pool, args.scenario)
        else:
            built = scenario.build(sim.pool, {} if args.empty else scenario.DEFAULT)

        def start_vms() -> None:
            for line in scenario.start_running(sim.pool, built):
                sys.stderr.write("xsguard simulate: %s\n" % line)

        serve(sim, ready=start_vms)
    finally:
        sim.stop()
        shutil.rmtree(sim.pool.root, ignore_errors=True)
    return EXIT_OK


def _dom0_python(python: Optional[str]) -> Optional[str]:
    """The simulated hosts' python3 running ``python``, its cache prepared (None: this interpreter)."""
    if not python:
        return None
    import tempfile

    from .sim import dom0python

    try:
        dom0python.prepare(python)
        return dom0python.interpreter(python, tempfile.mkdtemp(prefix="xsguard-dom0-"))
    except dom0python.Dom0PythonError as exc:
        raise BadArgument(str(exc))


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .sim import demo
    except ImportError:
        sys.stderr.write(NO_SIMULATOR % "demo")
        return 2
    return demo.run(sys.stdout)


def _pool_commands(sub: Any) -> None:
    p = sub.add_parser("pool", help="every host's ceilings, usage and what is left")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("place", help="every host's verdict for a VM, best first (exit 0 fits somewhere, 3 nowhere)")
    p.add_argument("vm", help="VM uuid or name")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("evacuate", help="would the other hosts absorb a host's running VMs (exit 0 yes, 3 no)")
    p.add_argument("host", nargs="?", help="host name or uuid")
    p.add_argument("--ha", action="store_true", help="for every host: would the others absorb its HA-protected VMs")
    p.add_argument("--json", action="store_true")


def _on_host(cfg: config.Config, api: Any, args: argparse.Namespace, fn: str, deadline: Deadline) -> Any:
    """``need`` or ``check`` answered by another host's xsguard (its plugin): with ``--host``, or
    where there is no dom0 (no inventory); None when this dom0 answers itself."""
    from . import peers
    from .errors import BadArgument

    if args.host is None and os.path.exists(cfg.dom0["inventory"]):
        return None
    hosts = peers.pool_hosts(api)
    _, vm, _ = api.vm_and_control_domain(args.vm, "")
    if args.host is not None:
        host_ref, _ = peers.find_host(hosts, args.host)
    else:
        host_ref = next((str(vm[k]) for k in ("resident_on", "affinity") if vm.get(k) in hosts), "")
        if not host_ref:
            raise BadArgument("VM '%s' runs nowhere and has no affinity: name the host with --host" % args.vm)
    answers = peers.ask(api, {host_ref: hosts[host_ref]}, fn, {"vm_uuid": str(vm["uuid"])}, deadline)
    if answers[0].result is None:
        raise XapiUnreachable("host '%s' did not answer: %s" % (answers[0].host_name, answers[0].error))
    return answers[0].result


def cmd_pool(args: argparse.Namespace) -> int:
    from . import peers

    data = _with_api(args, lambda cfg, api, dl: peers.pool_report(api, dl))
    _emit(args, data, tables.pool)
    return EXIT_OK


def cmd_place(args: argparse.Namespace) -> int:
    from . import peers

    data = _with_api(args, lambda cfg, api, dl: peers.place_report(api, args.vm, dl))
    _emit(args, data, tables.place)
    return EXIT_OK if data["fits"] else EXIT_REFUSED


def cmd_evacuate(args: argparse.Namespace) -> int:
    from . import peers

    if not args.ha and not args.host:
        sys.stderr.write("xsguard: evacuate needs a host (name or uuid), or --ha\n")
        return 2
    data = _with_api(args, lambda cfg, api, dl: peers.evacuate_report(cfg, api, args.host or "", dl, args.ha))
    _emit(args, data, tables.evacuation)
    plans = data["hosts"] if args.ha else [data]
    return EXIT_OK if all(p["fits"] for p in plans) else EXIT_REFUSED


COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "status": cmd_status,
    "need": cmd_need,
    "check": cmd_check,
    "denials": cmd_denials,
    "audit": cmd_audit,
    "pool": cmd_pool,
    "place": cmd_place,
    "evacuate": cmd_evacuate,
    "simulate": cmd_simulate,
    "demo": cmd_demo,
}
