"""The xsguard host plugin: ``xe host-call-plugin host-uuid=... plugin=xsguard fn=<fn> args:k=v``.

Each function returns JSON text. Errors reach the caller as XenAPI errors with xsguard's own
codes (``XSGUARD_BAD_ARGUMENT``, ``XSGUARD_VM_NOT_FOUND``, ...) and readable parameters,
never as a traceback.
"""

import json
import time

from . import commit, config, decision, denials, report, state, status
from .commit import EXIT_REFUSE
from .deadline import PLUGIN_FLOOR, Deadline, backstop, elapsed_ms
from .errors import BadArgument, ConfigError, DeadlineExceeded, XsguardError, wire_error
from .namedtuple import NamedTuple
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, Optional

MAX_ARG = 256
MAX_HELD = 1 << 20  # more ports than any dom0 has (FIFO ABI: 131071)
ADMIT_RESERVE = 1.0  # seconds of the source's time kept for the answer's way back through both xapis


class Function(NamedTuple):
    """A plugin function: what it runs, the arguments it takes, whether it names a VM (``vm_uuid``),
    whether it decides (is given a configuration error to signal; the others only note it)."""

    run: "Callable[..., Any]"
    takes: "FrozenSet[str]"
    names_vm: bool = False
    decides: bool = False


def validate(fn: str, args: "Dict[str, Any]") -> "Dict[str, str]":
    """The arguments as strings, or BadArgument naming what is wrong."""
    if not isinstance(args, dict):
        raise BadArgument("arguments must be a map of key=value")
    takes = FUNCTIONS[fn].takes
    unknown = sorted(set(args) - takes)
    if unknown:
        raise BadArgument(
            "%s takes %s; unknown: %s" % (fn, ", ".join(sorted(takes)) or "no arguments",
                                          ", ".join(k[:40] for k in unknown[:5])),
            *[k[:40] for k in unknown[:5]]
        )
    clean = {}
    for key, value in args.items():
        text = str(value)
        if len(text) > MAX_ARG:
            raise BadArgument("argument %s is %d characters long (at most %d)" % (key, len(text), MAX_ARG), key)
        clean[key] = text
    if FUNCTIONS[fn].names_vm or "vm_uuid" in clean:  # capacity names one optionally
        vm = clean.get("vm_uuid", "")
        if not config.UUID.match(vm.lower()):
            raise BadArgument("vm_uuid must be a VM's uuid, not %r" % vm[:60], "vm_uuid")
        clean["vm_uuid"] = vm.lower()
    return clean


def deadline_of(fn: str, args: "Dict[str, str]", cfg: config.Config) -> Deadline:
    """The time a call has: for ``admit`` with the source's ``time_left``, that less the way back
    (the source gives up then); otherwise the configured deadline, at least ``PLUGIN_FLOOR``."""
    if fn != "admit" or "time_left" not in args:
        return Deadline(max(cfg.policy.deadline, PLUGIN_FLOOR))
    try:
        left = config.bounded_seconds(args["time_left"])
    except ValueError as exc:
        raise BadArgument("time_left %s, not %r" % (exc, args["time_left"][:20]), "time_left")
    if left <= ADMIT_RESERVE:
        raise DeadlineExceeded("the source had %.1fs left, no more than the %.1fs the answer takes back"
                               % (left, ADMIT_RESERVE), left)
    return Deadline(left - ADMIT_RESERVE)


def _held(args: "Dict[str, str]") -> int:
    """What the arriving domain holds in the source's dom0 (``held``), 0 when not said."""
    text = args.get("held", "0")
    if not text.isdigit() or int(text) > MAX_HELD:
        raise BadArgument("held must be a whole number of ports up to %d, not %r" % (MAX_HELD, text[:20]), "held")
    return int(text)


def _status(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    return status.read(cfg, api, deadline)


def _need(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    return report.need_report(cfg, api, args["vm_uuid"], deadline)


def _check(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    return report.check_report(cfg, api, args["vm_uuid"], deadline)


def _admit(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline,
           config_error: "Optional[ConfigError]" = None) -> "Any":
    """A VM arriving here (a migration): decided, and recorded as ``POLICY`` says, under this host's
    lock; the decision (or its failure) logged and counted here, the host that decides. A configuration
    that does not parse is signalled as the hook signals it (``config_error``), and the VM decided with
    the last one that did."""
    from .journal import Journal, publish, signal_config_error

    held = _held(args)
    log = Journal(operation="migrate", vm_uuid=args["vm_uuid"], reason="destination", mode=cfg.policy.mode,
                  held_on_source=held if "held" in args else None, source_time_left=args.get("time_left"))
    if config_error is not None:
        signal_config_error(log, cfg, config_error, args["vm_uuid"])
    started = time.monotonic()
    progress: Dict[str, Any] = {}
    try:
        outcome = decision.admit(cfg, api, args["vm_uuid"], deadline, progress=progress, held_elsewhere=held)
    except Exception as exc:  # noqa: BLE001 - logged and charged here, then answered to the source as an error
        err = wire_error(exc)
        try:  # the source lets it through on error (on_error = allow): charged here all the same
            charged = commit.charge_unchecked(cfg, args["vm_uuid"], progress)
        except OSError as failed:
            charged = "NOT charged (%s)" % failed.strerror
        log.error("migrate_admit_failed", error=err.code, detail=err.message, charged=charged,
                  need=progress.get("need"), duration_ms=elapsed_ms(started))
        publish(cfg, log)
        raise
    result = report.outcome_json(cfg, outcome)
    result["host_uuid"] = outcome.subject.host.get("uuid", "")
    figures = report.decision_record(outcome)
    event = "migrate_%s" % outcome.policy.event
    if outcome.policy.event in ("admitted", "bypassed"):
        log.info(event, duration_ms=elapsed_ms(started), **figures)
    else:
        log.warning(event, duration_ms=elapsed_ms(started), message=result["message"], **figures)
    if outcome.policy.exit == EXIT_REFUSE:
        log.counters.append(state.COUNT_REFUSED)
    log.unknown_ceilings = [c for c in outcome.ceilings if c.warning]
    log.host = {"host_uuid": figures["host_uuid"], "host_name": figures["host_name"]}
    if outcome.policy.recorded:
        log.sync_ledger = cfg.ledger.path
    publish(cfg, log)
    return result


def _denials_fn(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
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
    records = denials.read(cfg.log.file, since=since, vm=args.get("vm"), host=args.get("host"))
    return {"denials": records.records[:limit], "corrupt_lines": records.corrupt}


def _audit(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    from . import audit

    return audit.audit(cfg, api, deadline).as_json()


def _capacity(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    from . import capacity

    return capacity.host_capacity(cfg, api, args, deadline)


def _needs(cfg: config.Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Any":
    from . import capacity

    return capacity.needs_here(cfg, api, args, deadline)


FUNCTIONS: "Dict[str, Function]" = {
    "status": Function(_status, frozenset()),
    "need": Function(_need, frozenset({"vm_uuid"}), True),
    "check": Function(_check, frozenset({"vm_uuid"}), True),
    "admit": Function(_admit, frozenset({"vm_uuid", "held", "time_left"}), True, decides=True),
    "denials": Function(_denials_fn, frozenset({"since", "limit", "vm", "host"})),
    "audit": Function(_audit, frozenset()),
    "capacity": Function(_capacity, frozenset({"vm_uuid", "vcpus", "disks", "vifs", "hvm", "uefi"})),
    "needs": Function(_needs, frozenset()),
}


def run(fn: str, session: "Any", args: "Dict[str, Any]") -> str:
    """Run one plugin function with the caller's session; XsguardError on any failure.

    A configuration that does not parse never fails a call: each answers with the last one that did
    (else the defaults for what is wrong, ``config.load_or_last_good``) and says so in its result
    (``config_error``); a decision (``admit``) also signals it as the hook does.
    """
    try:
        clean = validate(fn, args)
        cfg, config_error = config.load_or_last_good()
        deadline = deadline_of(fn, clean, cfg)
        function = FUNCTIONS[fn]
        extra = {"config_error": config_error} if function.decides and config_error is not None else {}
        with backstop(deadline), Xapi(cfg.xapi.url, deadline, session_ref=session._session) as api:
            result = function.run(cfg, api, clean, deadline, **extra)
        if config_error is not None:
            result["config_error"] = config_note(cfg, config_error)
        return json.dumps(result, sort_keys=True)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped to a wire error here
        raise wire_error(exc)


def config_note(cfg: config.Config, error: ConfigError) -> "Dict[str, str]":
    """What a result says of a configuration that does not parse: the error, and what it answered with."""
    return {"error": error.code, "detail": error.message, "using": cfg.source}


def main() -> None:
    """Entry point of /etc/xapi.d/plugins/xsguard."""
    import XenAPIPlugin

    from .utf8 import utf8_io

    utf8_io()

    def exported(fn: str) -> "Callable[[Any, Dict[str, Any]], str]":
        def call(session: "Any", args: "Dict[str, Any]") -> str:
            try:
                return run(fn, session, args)
            except XsguardError as err:
                raise XenAPIPlugin.Failure(err.code, err.params)

        return call

    XenAPIPlugin.dispatch({fn: exported(fn) for fn in FUNCTIONS})
