"""The vm-pre-start, vm-pre-migrate and vm-pre-resume hooks: argv and exit status in, a decision out.

xenopsd runs them with ``-vmuuid <uuid> -reason <reason>`` (``-vmdomid <domid>`` once a
domain exists: on the source of a migration, and for the new domain of a resume) and an
environment of only PATH. A start and a resume are decided on this host; a migration by the
destination's xsguard (host plugin ``admit``), which records the arriving VM there.
Exit 0 lets the start go on; 1 is xenopsd's "log and continue" (the start goes on, stdout
goes to its debug log); 2 aborts the start with XAPI_HOOK_FAILED, whose ``stdout`` field is
what the operator reads. Nothing here may end in an accidental exit 1: every exception is
caught and the ``on_error`` policy chooses the status.
"""

import json
import os
import sys
import time

from . import config, decision, probes, report, state
from .commit import (
    BYPASSED,
    EXIT_GO,
    EXIT_LOG_AND_CONTINUE,
    EXIT_REFUSE,
    POLICY,
    REBOOT_OVER_CEILING,
    Policy,
    charge_unchecked,
)
from .deadline import Deadline, backstop, elapsed_ms
from .errors import (
    BadArgument,
    DeadlineExceeded,
    NotACandidate,
    ProbeFailed,
    VmNotFound,
    XapiFailure,
    XsguardError,
    wire_error,
)
from .journal import Journal, Notice, publish, signal_config_error
from .model.verdict import ascii_safe, ascii_safe_lines
from .namedtuple import NamedTuple
from .xapi import Xapi, quote

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, NoReturn, Optional, Set, Tuple


class Args(NamedTuple):
    vm_uuid: str
    reason: str
    domid: "Optional[str]"


def parse_argv(argv: "List[str]") -> Args:
    """``-vmuuid U -reason R [-vmdomid N]``, in any order; anything else is an error."""
    values = {}
    rest = list(argv)
    while rest:
        flag = rest.pop(0)
        if flag not in ("-vmuuid", "-reason", "-vmdomid") or not rest:
            raise BadArgument("unexpected hook arguments: %s" % " ".join(argv[:8])[:200])
        values[flag] = rest.pop(0)
    if "-vmuuid" not in values:
        raise BadArgument("missing -vmuuid in hook arguments: %s" % " ".join(argv[:8])[:200])
    return Args(values["-vmuuid"], values.get("-reason", "none"), values.get("-vmdomid"))


def write_out(text: str) -> None:
    """stdout as ASCII bytes: with no LANG, Python 3.6 would refuse anything else."""
    if text:
        sys.stdout.buffer.write((ascii_safe_lines(text) + "\n").encode("ascii"))
        sys.stdout.flush()


def run(operation: str = "start") -> "NoReturn":
    """The installed hook's process: ``main`` on its argv, then the process ends with its status.

    xenopsd waits for the hook's process to end. Once the status is out (stdout flushed, the
    journal handed to its detached writer), Python's own teardown of what it loaded would only
    delay every VM start, and more so after that fork: every page the teardown touches is then
    copied (30 ms measured on dom0's Python 3.6, 16 ms on 3.11). The process exits without it.
    """
    status = main(sys.argv[1:], operation)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream gone: the status is all that is left
            pass
    os._exit(status)


def main(argv: "Optional[List[str]]" = None, operation: str = "start") -> int:
    """Run the hook; returns the exit status (never raises).

    argv is parsed first, so that whatever else fails, the VM is named. The status is final
    once the decision is committed (``ruling``): nothing after it (other hosts asked where the
    VM fits, the xapi session's end, the alarm) can turn it into ``on_error``.
    """
    started = time.monotonic()
    log = Journal(operation=operation)
    cfg = config.defaults()  # until the file is read: its log path, on_error = allow
    args: Optional[Args] = None
    progress: Dict[str, Any] = {}  # what is known of the VM so far: charged if it goes ahead unchecked
    ruling: Dict[str, Any] = {}  # the status and message, once decided
    try:
        argv_error: Optional[BadArgument] = None
        try:
            args = parse_argv(sys.argv[1:] if argv is None else argv)
            log.bind(vm_uuid=args.vm_uuid, reason=args.reason)
        except BadArgument as exc:  # decided below, with the configured log and on_error
            argv_error = exc
        cfg, config_error = config.load_or_last_good()
        if operation != "migrate":  # a migration is decided under the destination's mode
            log.bind(mode=cfg.policy.mode)
        if argv_error is not None:
            raise argv_error
        assert args is not None
        if config_error is not None:
            signal_config_error(log, cfg, config_error, args.vm_uuid)
        deadline = Deadline(cfg.policy.deadline)
        with backstop(deadline):
            _decide(cfg, args, deadline, log, started, progress, ruling)
    except BaseException as exc:  # noqa: BLE001 - the status must be chosen, never defaulted
        if not ruling:  # once decided (the alarm may ring just after), the verdict stands
            ruling.update(status=_guard_error(cfg, exc, log, args, started, progress), message="")
    _say(ruling["message"])
    try:
        publish(cfg, log)
    except BaseException:  # noqa: BLE001 - the log must not change the status
        pass
    return int(ruling["status"])


class Decided(NamedTuple):
    """A verdict as the hook reports it, whichever host decided it."""

    policy: Policy
    figures: "Dict[str, Any]"  # what the decision log records
    message: str
    notice: "Optional[Notice]"  # what to tell syslog and xapi of a refusal
    ledger_note: "Optional[str]"
    vm_uuid: str
    exclude: "Set[str]"  # host refs not to suggest: where it runs, where it was refused
    hosts: "Optional[Dict[str, Any]]" = None  # the pool's hosts, when already read (a migration)


def _decide(cfg: config.Config, args: Args, deadline: Deadline, log: Journal, started: float,
            progress: "Dict[str, Any]", ruling: "Dict[str, Any]") -> None:
    """Decide, and put the status in ``ruling`` as soon as it is final; then the refusal's hints."""
    operation = log.context["operation"]
    try:
        with Xapi(cfg.xapi.url, deadline) as api:
            if operation == "migrate":
                decided = _decide_migration(cfg, api, args, deadline, log, started, progress)
            else:
                decided = _decide_here(cfg, api, args, deadline, progress, operation, log)
            if decided is None:
                ruling.update(status=EXIT_GO, message="")
                return
            policy = decided.policy
            message = decided.message if operation == "start" else _reworded(decided.message, operation, [])
            ruling.update(status=policy.exit, message=_stdout(policy, operation, message))
            try:
                if policy.exit == EXIT_REFUSE:
                    message, elsewhere = _with_elsewhere(api, decided, operation, deadline)
                    decided.figures["elsewhere"] = elsewhere
                    ruling["message"] = message
            finally:
                _record(log, decided, operation, message, started)
    except NotACandidate as exc:
        log.info("%s_not_checked" % operation, why=exc.message, duration_ms=elapsed_ms(started))
        ruling.update(status=EXIT_GO, message="")


def _stdout(policy: Policy, operation: str, message: str) -> str:
    """What the hook prints: the refusal's message (the operator reads it in XAPI_HOOK_FAILED), or
    the warning of a start that goes on under ``mode = warn``."""
    if policy.exit == EXIT_REFUSE:
        return message
    if policy.exit == EXIT_LOG_AND_CONTINUE:
        return "xsguard (mode = warn) lets this %s go on, but would refuse it:\n" % operation + message
    return ""


def _record(log: Journal, decided: "Decided", operation: str, message: str, started: float) -> None:
    """The decision's log event, counter and notice, for ``publish`` to write once the status is out."""
    policy, figures = decided.policy, decided.figures
    if decided.ledger_note:
        log.warning("ledger_reset", note=decided.ledger_note, **{k: figures[k] for k in ("vm_name", "host_name")})
    event = "%s_%s" % (operation, policy.event)
    if operation == "migrate":  # the destination logged and counted its decision; here what it was told
        event = "migrate_asked"
        figures = dict(figures, told=policy.event, exit=policy.exit)
    if policy.event in ("admitted", "bypassed"):
        log.info(event, duration_ms=elapsed_ms(started), **figures)
        return
    log.warning(event, duration_ms=elapsed_ms(started), message=message, **figures)
    if policy.signalled and decided.notice is not None:
        log.notices.append(decided.notice)
    if policy.exit == EXIT_REFUSE and operation != "migrate":  # the destination counts its own refusals
        log.counters.append(state.COUNT_REFUSED)
    if policy is REBOOT_OVER_CEILING:
        log.counters.append(state.COUNT_OVER_CEILING)


def _decide_here(cfg: config.Config, api: Xapi, args: Args, deadline: Deadline, progress: "Dict[str, Any]",
                 operation: str, log: Journal) -> Decided:
    """A start or a resume, decided on this host; a resume's new domain is not charged twice."""
    domid = _domid(args) if operation == "resume" else None
    outcome = decision.admit(cfg, api, args.vm_uuid, deadline, progress=progress, candidate_domid=domid)
    verdict, subject = outcome.verdict, outcome.subject
    figures = report.decision_record(outcome)
    log.unknown_ceilings = [c for c in outcome.ceilings if c.warning]  # logged once per boot, by ``publish``
    log.host = {"host_uuid": figures["host_uuid"], "host_name": figures["host_name"]}
    if outcome.policy.recorded:
        log.sync_ledger = cfg.ledger.path
    notice = None
    if outcome.policy is REBOOT_OVER_CEILING:
        from . import alerts

        notice = Notice(alerts.over_ceiling_line(verdict), alerts.OVER_CEILING_ALERT_NAME,
                        alerts.over_ceiling_body(verdict), verdict.need.vm_uuid)
    elif outcome.policy.signalled:
        from . import alerts

        notice = Notice(alerts.syslog_line(verdict), alerts.REFUSED_ALERTS[operation], alerts.alert_body(verdict),
                        verdict.need.vm_uuid)
    return Decided(outcome.policy, figures, verdict.message, notice, outcome.ledger_note, subject.vm_uuid,
                   {subject.host_ref})


def _domid(args: Args) -> "Optional[int]":
    if args.domid is None:
        return None
    try:
        return int(args.domid)
    except ValueError:
        raise BadArgument("-vmdomid must be a domain id, not %r" % args.domid[:20])


def _decide_migration(cfg: config.Config, api: Xapi, args: Args, deadline: Deadline, log: Journal,
                      started: float, progress: "Dict[str, Any]") -> "Optional[Decided]":
    """A migration, decided by the destination's xsguard (host plugin ``admit``): it records the
    arriving VM in its own ledger under its own lock, and logs and counts its decision. The
    source sends what the domain holds in its dom0 (the destination charges the larger of that
    and its need) and the time it has left (the destination answers within it). A destination
    outside this pool: not checked."""
    found = api.where("VM", "field \"uuid\" = %s" % quote(args.vm_uuid))
    if not found:
        raise VmNotFound("no VM has uuid '%s'" % args.vm_uuid, args.vm_uuid)
    vm = next(iter(found.values()))
    hosts = api.call("host.get_all_records")
    target = vm.get("scheduled_to_be_resident_on")
    if target not in hosts:
        log.info("migrate_not_checked", vm_name=vm.get("name_label", ""),
                 why="the destination is not a host of this pool (a cross-pool migration)",
                 duration_ms=elapsed_ms(started))
        return None
    destination = {"host_uuid": hosts[target].get("uuid", ""), "host_name": hosts[target].get("name_label", "")}
    progress.update(destination, vm_ref=next(iter(found)), target_ref=target)
    request = {"vm_uuid": args.vm_uuid}
    held = _held_here(cfg, args, deadline, log)
    if held is not None:
        request["held"] = str(held)
    left = deadline.remaining() - ELSEWHERE_RESERVE
    if left <= 0:
        raise DeadlineExceeded("the %.1fs deadline passed before the destination was asked" % deadline.seconds)
    request["time_left"] = "%.3f" % left
    answer = _admit_answer(api.call("host.call_plugin", target, "xsguard", "admit", request))
    admitted = answer["verdict"] == "admit"
    policy = BYPASSED if answer.get("bypassed") else POLICY[(answer["mode"], admitted)]
    figures = dict(
        destination,
        vm_name=answer.get("vm_name", ""),
        source_host_uuid=hosts.get(vm.get("resident_on"), {}).get("uuid", ""),
        destination_mode=answer["mode"],
        held=held,
        time_left=float(request["time_left"]),
        verdict=answer["verdict"],
        ceiling=answer.get("ceiling"),
        need=answer.get("need"),
        checks=answer.get("checks", []),
        breakdown=answer.get("breakdown", []),
    )
    message = str(answer.get("message", ""))
    notice = None
    if policy.signalled:
        from . import alerts

        notice = Notice(alerts.migration_line(answer), alerts.REFUSED_ALERTS["migrate"],
                        ascii_safe_lines(_reworded(message, "migrate", [])), args.vm_uuid)
    return Decided(policy, figures, message, notice, None, args.vm_uuid,
                   {str(target), str(vm.get("resident_on", ""))}, hosts)


def _held_here(cfg: config.Config, args: Args, deadline: Deadline, log: Journal) -> "Optional[int]":
    """What the migrating domain (``-vmdomid``) holds in this dom0 now; None when unknown (said in the log)."""
    domid = _domid(args)
    if domid is None:
        return None
    try:
        return probes.held_by_domain(cfg, deadline, domid)
    except ProbeFailed as exc:
        log.warning("held_not_measured", domid=domid, error=exc.message)
        return None


def _admit_answer(text: str) -> "Dict[str, Any]":
    """The destination's ``admit`` answer, or XapiFailure naming what came back instead."""
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("verdict") not in ("admit", "refuse") \
            or answer.get("mode") not in ("enforce", "warn", "off"):
        raise XapiFailure("the destination's xsguard did not answer admit with a verdict: %r" % str(text)[:80])
    return answer


ELSEWHERE_RESERVE = 0.3  # seconds of the deadline kept for the hook's own exit when other hosts are asked


def _with_elsewhere(api: Xapi, decided: Decided, operation: str, deadline: Deadline) -> "Tuple[str, List[str]]":
    """The refusal's message naming up to three other hosts where the VM fits now, and their names."""
    left = deadline.remaining() - ELSEWHERE_RESERVE
    if left <= 0:
        late = ["- other hosts were not asked where it fits: the deadline ([policy] deadline) had passed"]
        return _reworded(decided.message, operation, late), []
    from . import peers
    from .model import placement

    try:
        room = peers.room_elsewhere(api, decided.vm_uuid, decided.exclude, Deadline(left), decided.hosts)
    except Exception as exc:  # noqa: BLE001 - the refusal stands whatever asking the others did
        unasked = ["- other hosts could not be asked where it fits: %s" % wire_error(exc).message]
        return _reworded(decided.message, operation, unasked), []
    hints = placement.suggestions(operation, decided.vm_uuid, room.fits, room.asked, room.answered)
    fits = [r.host_name for r in room.fits[:placement.MAX_SUGGESTIONS]]
    return placement.reworded(decided.message, operation, hints), fits


def _reworded(message: str, operation: str, hints: "List[str]") -> str:
    """``placement.reworded``, imported only off an admitted start's path (a refusal, a migration, a resume)."""
    from .model import placement

    return placement.reworded(message, operation, hints)


def _guard_error(cfg: config.Config, exc: BaseException, log: Journal, args: "Optional[Args]", started: float,
                 progress: "Dict[str, Any]") -> int:
    """xsguard itself failed: deny (exit 2), or allow (exit 1) loudly and still charge the VM."""
    on_error = cfg.policy.on_error
    err = wire_error(exc)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, XsguardError):
        err = XsguardError("interrupted (%s)" % type(exc).__name__)
    vm = args.vm_uuid if args else "?"
    operation = log.context["operation"]
    exit_status = EXIT_REFUSE if on_error == "deny" else EXIT_LOG_AND_CONTINUE
    log.error("guard_error", error=err.code, detail=err.message, on_error=on_error, exit=exit_status,
              duration_ms=elapsed_ms(started), **{k: progress[k] for k in ("host_uuid", "host_name") if k in progress})
    if on_error == "deny":
        _say("xsguard could not check this %s and is set to refuse when it fails ([policy] on_error = deny).\n"
             "What failed: %s\nFix the cause, or set on_error = allow in /etc/xsguard/xsguard.conf." % (
                 operation, err.message))
        return EXIT_REFUSE
    if operation == "migrate":
        charged = _mark_unchecked_migration(cfg, progress, log)
    else:
        charged = _charge_unchecked(cfg, args, progress, log)
    line = "could not check the %s of VM %s; let through unchecked ([policy] on_error = allow), %s: %s" % (
        operation, vm, charged, err.message)
    log.error("%s_unchecked" % operation, error=err.code, detail=err.message, charged=charged,
              need=progress.get("need"), exit=EXIT_LOG_AND_CONTINUE, duration_ms=elapsed_ms(started),
              **{k: progress[k] for k in ("host_uuid", "host_name") if k in progress})
    log.counters.append(state.COUNT_UNCHECKED)
    if args is not None:
        from . import alerts

        log.notices.append(Notice(ascii_safe(line), alerts.UNCHECKED_ALERTS[operation], ascii_safe_lines(line),
                                  args.vm_uuid))
    _say("xsguard " + line)
    return EXIT_LOG_AND_CONTINUE


MARK_DEADLINE = 2.0  # seconds to tell the destination of a migration let through undecided


def _mark_unchecked_migration(cfg: config.Config, progress: "Dict[str, Any]", log: Journal) -> str:
    """Tell the destination, in the VM's record its decisions read, that this migration goes ahead
    undecided (``gather.UNCHECKED_TO``): each charges it at once while xapi shows it arriving.
    Without the mark (xapi not answering either), it is charged there once a decision's span has
    passed since one first saw it. Says what was charged."""
    if "target_ref" not in progress:
        return "not charged (the destination was not read)"
    from .gather import UNCHECKED_TO

    try:
        with Xapi(cfg.xapi.url, Deadline(MARK_DEADLINE)) as api:
            api.call("VM.remove_from_other_config", progress["vm_ref"], UNCHECKED_TO)
            api.call("VM.add_to_other_config", progress["vm_ref"], UNCHECKED_TO, progress["target_ref"])
    except Exception as exc:  # noqa: BLE001 - the migration goes on either way; say what it is charged
        log.error("charge_failed", error=str(wire_error(exc)))
        return ("charged by the destination once it has seen it arriving for a decision's span (it could not be"
                " told at once: %s)" % wire_error(exc).message)
    return "charged at once by the destination (VM other-config:%s)" % UNCHECKED_TO


def _charge_unchecked(cfg: config.Config, args: "Optional[Args]", progress: "Dict[str, Any]", log: Journal) -> str:
    """Enter a start let through unchecked in the ledger, without its lock; says what was charged."""
    if args is None:
        return "not charged (no VM named)"
    try:
        return charge_unchecked(cfg, args.vm_uuid, progress)
    except OSError as exc:
        log.error("charge_failed", error=str(exc))
        return "NOT charged (%s)" % exc.strerror


def _say(text: str) -> None:
    try:
        write_out(text)
    except Exception:  # noqa: BLE001 - stdout gone: the status is all that is left
        pass
