"""The xsguard host plugin: ``xe host-call-plugin host-uuid=... plugin=xsguard fn=<fn> args:k=v``.

Each function returns JSON text. Errors reach the caller as XenAPI errors with xsguard's own
codes (``XSGUARD_BAD_ARGUMENT``, ``XSGUARD_VM_NOT_FOUND``, ...) and readable parameters,
never as a traceback.
"""

import io
import json
import os
import re
import sys
from typing import Any, Callable, Dict, Set

from . import config, decision, denials, report, status
from .deadline import Deadline, backstop
from .errors import BadArgument, XsguardError, wire_error
from .xapi import Xapi

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
MAX_ARG = 256

ALLOWED: Dict[str, Set[str]] = {
    "status": set(),
    "need": {"vm_uuid"},
    "check": {"vm_uuid"},
    "admit": {"vm_uuid"},
    "denials": {"since", "limit", "vm", "host"},
    "audit": set(),
}


def validate(fn: str, args: Dict[str, Any]) -> Dict[str, str]:
    """The arguments as strings, or BadArgument naming what is wrong."""
    if not isinstance(args, dict):
        raise BadArgument("arguments must be a map of key=value")
    unknown = sorted(set(args) - ALLOWED[fn])
    if unknown:
        raise BadArgument(
            "%s takes %s; unknown: %s" % (fn, ", ".join(sorted(ALLOWED[fn])) or "no arguments",
                                          ", ".join(k[:40] for k in unknown[:5])),
            *[k[:40] for k in unknown[:5]]
        )
    clean = {}
    for key, value in args.items():
        text = str(value)
        if len(text) > MAX_ARG:
            raise BadArgument("argument %s is %d characters long (at most %d)" % (key, len(text), MAX_ARG), key)
        clean[key] = text
    if fn in ("need", "check", "admit"):
        vm = clean.get("vm_uuid", "")
        if not UUID.match(vm.lower()):
            raise BadArgument("vm_uuid must be a VM's uuid, not %r" % vm[:60], "vm_uuid")
        clean["vm_uuid"] = vm.lower()
    return clean


def _status(cfg: config.Config, api: Xapi, args: Dict[str, str], deadline: Deadline) -> Any:
    return status.read(cfg, api, deadline)


def _need(cfg: config.Config, api: Xapi, args: Dict[str, str], deadline: Deadline) -> Any:
    return report.need_report(cfg, api, args["vm_uuid"], deadline)


def _check(cfg: config.Config, api: Xapi, args: Dict[str, str], deadline: Deadline) -> Any:
    return report.check_report(cfg, api, args["vm_uuid"], deadline)


def _admit(cfg: config.Config, api: Xapi, args: Dict[str, str], deadline: Deadline) -> Any:
    """A VM arriving here (a migration): decided, and recorded as ``POLICY`` says, under this host's lock."""
    outcome = decision.admit(cfg, api, args["vm_uuid"], deadline)
    result = report.outcome_json(cfg, outcome)
    result["host_uuid"] = outcome.subject.host.get("uuid", "")
    return result


def _denials_fn(cfg: config.Config, api: Xapi, args: Dict[str, str], deadline: Deadline) -> Any:
    try:
        limit = int(args.get("limit", "50"))
    except ValueError:
        raise BadArgument("limit must be a whole number, not %r" % args["limit"][:20], "limit")
    if not 1 <= limit <= 10000:
        raise BadArgument("limit must be between 1 and 10000", "limit")
    try:
        since = denials.parse_since(args.get("since", "24h"))
    except ValueError as exc:
        raise BadArgument(str(exc), "since")
    records = denials.read(cfg.log["file"], since=since, vm=args.get("vm"), host=args.get("host"))
    return {"denials": records.records[:limit], "corrupt_lines": records.corrupt}


def _audit(cfg: config.Config, api: Xapi, args: Dict[str, str], deadline: Deadline) -> Any:
    from . import audit

    return audit.audit(cfg, api, deadline).as_json()


FUNCTIONS: Dict[str, Callable[..., Any]] = {
    "status": _status,
    "need": _need,
    "check": _check,
    "admit": _admit,
    "denials": _denials_fn,
    "audit": _audit,
}


def run(fn: str, session: Any, args: Dict[str, Any]) -> str:
    """Run one plugin function with the caller's session; XsguardError on any failure."""
    try:
        clean = validate(fn, args)
        cfg = config.load()
        deadline = Deadline(max(cfg.policy["deadline"], 10.0))
        with backstop(deadline), Xapi(cfg.xapi["url"], deadline, session_ref=session._session) as api:
            result = FUNCTIONS[fn](cfg, api, clean, deadline)
        return json.dumps(result, sort_keys=True)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped to a wire error here
        raise wire_error(exc)


def utf8_io() -> None:
    """argv and stdout as UTF-8, whatever the locale.

    xapi starts plugins with only PATH, so dom0's Python 3.6 runs in the C locale: it decodes
    argv as ASCII (a non-ASCII byte becomes a lone surrogate, which XML-RPC's parser cannot
    encode) and writes stdout as strict ASCII. xapi sends and reads UTF-8.
    """
    sys.argv = [os.fsencode(arg).decode("utf-8", "replace") for arg in sys.argv]
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        sys.stdout.flush()
        sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="utf-8", errors="replace", line_buffering=True)


def main() -> None:
    """Entry point of /etc/xapi.d/plugins/xsguard."""
    import XenAPIPlugin

    utf8_io()

    def exported(fn: str) -> Callable[[Any, Dict[str, Any]], str]:
        def call(session: Any, args: Dict[str, Any]) -> str:
            try:
                return run(fn, session, args)
            except XsguardError as err:
                raise XenAPIPlugin.Failure(err.code, err.params)

        return call

    XenAPIPlugin.dispatch({fn: exported(fn) for fn in FUNCTIONS})
