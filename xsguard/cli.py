"""The ``xsguard`` command."""

import argparse
import json
import os
import shutil
import signal
import sys

from . import __version__, config, denials, endpoint, tables
from .deadline import Deadline, backstop
from .errors import XapiUnreachable, XsguardError

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

# No XenAPI at import time (xapi.py, decision.py, peers.py import it): --version and --help work
# where it is missing, on a plain Xen dom0 with xl.

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_FAILED = 4

EPILOG = """xapi: in dom0 the local socket; elsewhere --xapi https://<pool master>/ (or $XSGUARD_XAPI_URL, or
[xapi] url). Credentials: $XSGUARD_XAPI_USER (default root) and $XSGUARD_XAPI_PASSWORD. XenServer and
XCP-ng answer with a self-signed certificate: trust it with --ca-file pool.pem (or [xapi] ca_file);
verification is never turned off. From a workstation, every command asks the hosts' own xsguard
(host plugin); status and audit ask the host named with --host (needed when the pool has several).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xsguard", description="dom0 event-channel admission control", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="xsguard %s" % __version__)
    p.add_argument("--config", help="config file (env XSGUARD_CONFIG, default %s)" % config.DEFAULT_PATH)
    p.add_argument("--xapi", metavar="URL", help="xapi URL, https://<pool master>/ (env XSGUARD_XAPI_URL;"
                   " default: the local socket); user and password: env %s, %s"
                   % (endpoint.USER_VARIABLE, endpoint.PASSWORD_VARIABLE))
    p.add_argument("--ca-file", metavar="PEM", help="certificate(s) to trust for an https:// URL: the pool's"
                   " self-signed one (default [xapi] ca_file)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("status", help="a dom0's ceilings, usage, promises and leaks (this one, or --host's)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--host", help="host name or uuid (default: this dom0; from a workstation, the only host)")
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
    d.add_argument("--host", help="host uuid or name (with --xapi: the one host asked; default every host)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--summary", action="store_true", help="counts by VM, host and hour")
    a = sub.add_parser("audit", help="each VM running on a host: predicted next to what dom0 holds, and a verdict")
    a.add_argument("--json", action="store_true")
    a.add_argument("--host", help="host name or uuid (default: this dom0; from a workstation, the only host)")
    v = sub.add_parser("vms", help="every VM: its state, host and what it needs there (each host's own figure)")
    v.add_argument("--json", action="store_true")
    c = sub.add_parser("capacity", help="how many more VMs of a shape fit on each host and in the pool, what stops"
                                        " them and what the usual remedies would give")
    c.add_argument("--like", metavar="VM", help="the shape of this VM (uuid or name)")
    c.add_argument("--vcpus", type=int, default=1)
    c.add_argument("--disks", type=int, default=1)
    c.add_argument("--vifs", type=int, default=1)
    c.add_argument("--hvm", action="store_true")
    c.add_argument("--uefi", action="store_true", help="UEFI firmware (HVM)")
    c.add_argument("--host", help="host name or uuid (default: every host)")
    c.add_argument("--json", action="store_true")
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


def main(argv: "Optional[List[str]]" = None) -> int:
    if argv is None:
        from .utf8 import utf8_io

        utf8_io()
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except Usage as err:
        sys.stderr.write("xsguard: %s\n" % tables.clean(err))
        return EXIT_USAGE
    except XsguardError as err:
        sys.stderr.write("xsguard: %s\n" % tables.clean(err.message))
        return EXIT_FAILED
    except ImportError as exc:
        if exc.name not in ("XenAPI", "XenAPIPlugin"):
            raise
        sys.stderr.write("xsguard: %s needs XenAPI (xapi's Python module), which is not installed here\n"
                         % args.command)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


class Usage(Exception):
    """The command line asks for something that cannot be (exit 2)."""


def _cfg(args: argparse.Namespace) -> config.Config:
    cfg = config.load(args.config)
    url = args.xapi or os.environ.get("XSGUARD_XAPI_URL")
    hint = endpoint.scheme_hint(url or "local")
    if hint:
        raise Usage(hint)
    overrides = {"xapi.url": url} if url else {}
    if args.ca_file:
        overrides["xapi.ca_file"] = args.ca_file
    if overrides:
        cfg = cfg.with_values(overrides)
    warning = endpoint.cleartext_warning(cfg.xapi.url)
    if warning:
        sys.stderr.write("xsguard: %s\n" % warning)
    return cfg


def _remote(cfg: config.Config) -> bool:
    """Asked of a pool over the network (--xapi https://...): no local file answers for it."""
    return not endpoint.is_local(cfg.xapi.url)


def _emit(args: argparse.Namespace, data: "Any", human: "Callable[[Any], str]") -> None:
    if args.json:
        sys.stdout.write(json.dumps(data, sort_keys=True, indent=2) + "\n")
    else:
        sys.stdout.write(human(data) + "\n")


def _with_api(args: argparse.Namespace, fn: "Callable[..., Any]", cfg: "Optional[config.Config]" = None) -> "Any":
    from .xapi import Xapi

    cfg = cfg or _cfg(args)
    deadline = Deadline(max(cfg.policy.deadline, 30.0))
    with backstop(deadline), Xapi(cfg.xapi.url, deadline, ca_file=cfg.xapi.ca_file or None) as api:
        return fn(cfg, api, deadline)


def _asks_a_host(cfg: config.Config, args: argparse.Namespace) -> bool:
    """status and audit: answered by a host's plugin (--host, or from a workstation: xapi over the
    network and no dom0 here), not by this dom0 (nor by a plain Xen dom0's, whose xapi is absent)."""
    return args.host is not None or (_remote(cfg) and not _a_dom0_here(cfg))


def _a_dom0_here(cfg: config.Config) -> bool:
    """This machine is a Xen dom0: xapi's inventory, or (plain Xen with xl) Xen's lsevtchn."""
    from .errors import ProbeFailed
    from .probes import find_lsevtchn

    if os.path.exists(cfg.dom0.inventory):
        return True
    try:
        find_lsevtchn(cfg.dom0.lsevtchn)
    except ProbeFailed:
        return False
    return True


def _one_host(api: "Any", key: "Optional[str]") -> "Dict[str, Any]":
    """The host named (uuid or name), else the pool's only host, by ref; Usage when there are several."""
    from . import peers

    hosts = peers.pool_hosts(api)
    if key is not None:
        return dict([peers.find_host(hosts, key)])
    if len(hosts) != 1:
        names = sorted(str(h.get("name_label", "")) for h in hosts.values())
        raise Usage("the pool has %d hosts: name one with --host (%s)" % (len(hosts), ", ".join(names[:10])))
    return hosts


def _ask(api: "Any", host: "Dict[str, Any]", fn: str, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    """One host's plugin's answer (``host``: its record by ref); XapiUnreachable when it did not answer."""
    from . import peers

    answer = peers.ask(api, host, fn, args, deadline)[0]
    if answer.result is None:
        raise XapiUnreachable("host '%s' did not answer: %s" % (answer.host_name, answer.error))
    return answer.result


def cmd_status(args: argparse.Namespace) -> int:
    from . import status

    cfg = _cfg(args)
    if _asks_a_host(cfg, args):
        data = _with_api(args, lambda c, api, dl: _ask(api, _one_host(api, args.host), "status", {}, dl), cfg)
        _emit(args, data, tables.status)
        return EXIT_OK
    deadline = Deadline(max(cfg.policy.deadline, 30.0))
    with backstop(deadline):
        if status.without_xapi(cfg):
            data = status.read(cfg, None, deadline, patient=True)  # plain Xen: no xapi to ask
        else:
            from .xapi import Xapi

            try:
                with Xapi(cfg.xapi.url, deadline) as api:
                    data = status.read(cfg, api, deadline, patient=True)
            except XapiUnreachable as exc:
                data = status.read(cfg, None, deadline, patient=True)
                data["notes"].append(exc.message)
    _emit(args, data, tables.status)
    return EXIT_OK


def cmd_need(args: argparse.Namespace) -> int:
    from . import report

    data = _with_api(args, lambda cfg, api, dl: _on_host(cfg, api, args, "need", dl)
                     or report.need_report(cfg, api, args.vm, dl))
    _emit(args, data, tables.need)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from . import report

    data = _with_api(args, lambda cfg, api, dl: _on_host(cfg, api, args, "check", dl)
                     or report.check_report(cfg, api, args.vm, dl))
    _emit(args, data, tables.check)
    return EXIT_OK if data["verdict"] in ("admit", "resident") or data["bypassed"] else EXIT_REFUSED


def cmd_denials(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    try:
        since = denials.parse_since(args.since)
    except ValueError as exc:
        raise Usage(str(exc))
    if _remote(cfg):
        return _denials_of_hosts(args, cfg)
    found = denials.read(cfg.log.file, since=since, vm=args.vm, host=args.host)
    _emit_denials(args, found.records)
    if found.corrupt:
        sys.stderr.write("xsguard: skipped %d corrupt line(s) in %s\n" % (found.corrupt, cfg.log.file))
    return EXIT_OK


def _emit_denials(args: argparse.Namespace, records: "List[Dict[str, Any]]") -> None:
    if args.summary:
        _emit(args, denials.summary(records), tables.summary)
    else:
        _emit(args, records, tables.denials)


def _denials_of_hosts(args: argparse.Namespace, cfg: config.Config) -> int:
    """Each host's refusals from its own decision log (its plugin), newest first; a host that
    does not answer is said, and the command fails: its refusals are not known."""
    from . import fleet, peers

    wanted = {"since": args.since, "limit": str(DENIALS_LIMIT)}
    if args.vm:
        wanted["vm"] = args.vm
    answers = _with_api(args, lambda c, api, dl: peers.ask(api, fleet.targets(api, args.host), "denials", wanted, dl),
                        cfg)
    records = [r for a in answers if a.result is not None for r in a.result.get("denials", [])]
    records.sort(key=lambda r: str(r.get("time", "")), reverse=True)
    _emit_denials(args, records)
    for a in answers:
        corrupt = (a.result or {}).get("corrupt_lines", 0)
        if corrupt:
            sys.stderr.write("xsguard: skipped %d corrupt line(s) in host '%s''s log\n"
                             % (corrupt, tables.clean(a.host_name)))
    return _said_unreachable(fleet.unanswered(answers))


DENIALS_LIMIT = 10000  # the most a host's plugin returns (the newest)


def _said_unreachable(lines: "List[str]") -> int:
    """Say each host that did not answer (exit 4: the answer is incomplete), else exit 0."""
    for line in lines:
        sys.stderr.write("xsguard: %s\n" % tables.clean(line))
    return EXIT_FAILED if lines else EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from . import audit

    cfg = _cfg(args)
    if _asks_a_host(cfg, args):
        data = _with_api(args, lambda c, api, dl: _ask(api, _one_host(api, args.host), "audit", {}, dl), cfg)
    else:
        data = _with_api(args, audit.audit, cfg).as_json()
    _emit(args, data, tables.audit)
    return EXIT_OK


def cmd_vms(args: argparse.Namespace) -> int:
    from . import fleet

    found = _with_api(args, lambda cfg, api, dl: fleet.vms_report(api, dl))
    _emit(args, found.data, tables.vms)
    return _said_unreachable(found.unreachable)


def cmd_capacity(args: argparse.Namespace) -> int:
    from . import fleet

    if args.like:
        if any(getattr(args, k) != v for k, v in (("vcpus", 1), ("disks", 1), ("vifs", 1), ("hvm", False),
                                                   ("uefi", False))):
            raise Usage("--like takes the shape of a VM: give it, or --vcpus --disks --vifs --hvm --uefi")
    else:
        from .model import capacity as model

        try:
            model.shape(args.vcpus, args.disks, args.vifs, args.hvm, args.uefi)
        except ValueError as exc:
            raise Usage(str(exc))

    def ask(cfg: config.Config, api: "Any", deadline: Deadline) -> "Any":
        from .capacity import shape_args
        from .model import capacity as model

        if args.like:
            _, vm, _ = api.vm_and_control_domain(args.like, "")
            wanted = {"vm_uuid": str(vm["uuid"])}
        else:
            wanted = shape_args(model.shape(args.vcpus, args.disks, args.vifs, args.hvm, args.uefi))
        return fleet.capacity_report(api, wanted, args.host, deadline)

    found = _with_api(args, ask)
    _emit(args, found.data, lambda data: tables.capacity(data, found.extra))
    return _said_unreachable(found.unreachable)


NO_SIMULATOR = ("xsguard: the simulated pool is not installed here (dom0's package leaves it out):"
                " run `xsguard %s` where xsguard was installed with pip, or from a checkout\n")


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        from .sim import scenario
        from .sim.pool import Pool
        from .sim.server import Simulator, serve
        from .sim.store import ApiError
    except ImportError:
        sys.stderr.write(NO_SIMULATOR % "simulate")
        return EXIT_USAGE
    if args.empty and args.scenario:
        raise Usage("--empty and --scenario exclude each other")
    doc = _scenario(args.scenario) if args.scenario else {} if args.empty else scenario.DEFAULT
    signal.signal(signal.SIGTERM, _interrupted)  # until serve() takes over: clean up on SIGTERM too
    made: List[str] = []  # directories this command made, removed whatever happens
    try:
        # each host runs xcp-rrdd, and xsguard-rrdd where xsguard is installed: the graphs
        pool = Pool(install_xsguard=not args.bare, interpreter=_dom0_python(args.dom0_python, made), rrdd=True)
        made.append(pool.root)
        try:
            sim = Simulator(port=args.port, pool=pool)
        except OSError as exc:
            raise Usage("cannot serve on 127.0.0.1 port %d: %s" % (args.port, exc.strerror or exc))
        try:
            try:
                built = scenario.build(sim.pool, doc)
            except (ValueError, KeyError, TypeError, ApiError) as exc:
                raise Usage("scenario %s: %s" % (args.scenario or "(default)", _why(exc)))

            def start_vms() -> None:
                for line in scenario.start_running(sim.pool, built):
                    sys.stderr.write("xsguard simulate: %s\n" % tables.clean(line))
                _describe_pool(sim.url, not args.bare)

            serve(sim, ready=start_vms)
        finally:
            sim.stop()
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
    return EXIT_OK


def _interrupted(signum: int, frame: "Any") -> None:
    raise KeyboardInterrupt


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "missing key %s" % exc
    description = getattr(exc, "description", None)  # the simulator's xapi error: code and parameters
    return " ".join(str(d) for d in description) if description else str(exc)


def _scenario(path: str) -> "Any":
    """A scenario file's JSON, or Usage saying in one line why not."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise Usage("cannot read scenario %s: %s" % (path, exc.strerror or exc))
    except ValueError as exc:  # malformed JSON, or not UTF-8
        raise Usage("scenario %s is not valid JSON: %s" % (path, exc))


SHOWN_VMS = 20  # the VMs simulate lists when it starts


def _describe_pool(url: str, with_xsguard: bool) -> None:
    """What the simulator serves, on stderr: each host and VM, what each VM would need there."""
    from . import fleet
    from .xapi import Xapi

    deadline = Deadline(30.0)
    with Xapi(url, deadline) as api:
        hosts = sorted(str(h.get("name_label")) for h in api.call("host.get_all_records").values())
        found = fleet.vms_report(api, deadline) if with_xsguard else None
    sys.stderr.write("xsguard simulate: hosts %s\n" % (", ".join(tables.clean(h) for h in hosts) or "none"))
    if found is not None and found.data["vms"]:
        shown = found.data["vms"][:SHOWN_VMS]
        sys.stderr.write(tables.vms({"vms": shown}) + "\n")
        if len(found.data["vms"]) > len(shown):
            sys.stderr.write("... %d more VMs (xsguard --xapi %s vms lists them all)\n"
                             % (len(found.data["vms"]) - len(shown), url))
    sys.stderr.write("try: xsguard --xapi %s vms | pool | capacity --like <vm> | place <vm> | denials\n" % url)


def _dom0_python(python: "Optional[str]", made: "List[str]") -> "Optional[str]":
    """The simulated hosts' python3 running ``python``, its cache prepared (None: this interpreter);
    the directory it lays out is added to ``made``."""
    if not python:
        return None
    import tempfile

    from .sim import dom0python

    try:
        dom0python.prepare(python)
        root = tempfile.mkdtemp(prefix="xsguard-dom0-")
        made.append(root)
        return dom0python.interpreter(python, root)
    except dom0python.Dom0PythonError as exc:
        raise Usage(str(exc))


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .sim import demo
    except ImportError:
        sys.stderr.write(NO_SIMULATOR % "demo")
        return 2
    return demo.run(sys.stdout)


def _pool_commands(sub: "Any") -> None:
    p = sub.add_parser("pool", help="every host's ceilings, usage and what is left")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("place", help="every host's verdict for a VM, best first (exit 0 fits somewhere, 3 nowhere)")
    p.add_argument("vm", help="VM uuid or name")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("evacuate", help="would the other hosts absorb a host's running VMs (exit 0 yes, 3 no)")
    p.add_argument("host", nargs="?", help="host name or uuid")
    p.add_argument("--ha", action="store_true", help="for every host: would the others absorb its HA-protected VMs")
    p.add_argument("--json", action="store_true")


def _on_host(cfg: config.Config, api: "Any", args: argparse.Namespace, fn: str, deadline: Deadline) -> "Any":
    """``need`` or ``check`` answered by another host's xsguard (its plugin): with ``--host``, or
    where there is no dom0 (no inventory); None when this dom0 answers itself."""
    from . import peers
    from .errors import BadArgument

    if args.host is None and os.path.exists(cfg.dom0.inventory):
        return None
    hosts = peers.pool_hosts(api)
    _, vm, _ = api.vm_and_control_domain(args.vm, "")
    if args.host is not None:
        host_ref, _ = peers.find_host(hosts, args.host)
    else:
        host_ref = next((str(vm[k]) for k in ("resident_on", "affinity") if vm.get(k) in hosts), "")
        if not host_ref:
            raise BadArgument("VM '%s' runs nowhere and has no affinity: name the host with --host" % args.vm)
    return _ask(api, {host_ref: hosts[host_ref]}, fn, {"vm_uuid": str(vm["uuid"])}, deadline)


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


COMMANDS: "Dict[str, Callable[[argparse.Namespace], int]]" = {
    "status": cmd_status,
    "need": cmd_need,
    "check": cmd_check,
    "denials": cmd_denials,
    "audit": cmd_audit,
    "pool": cmd_pool,
    "place": cmd_place,
    "evacuate": cmd_evacuate,
    "vms": cmd_vms,
    "capacity": cmd_capacity,
    "simulate": cmd_simulate,
    "demo": cmd_demo,
}
