"""The vm-pre-start hook: argv and exit status in, a decision out.

xenopsd runs it with ``-vmuuid <uuid> -reason <reason>`` and an environment of only PATH.
Exit 0 lets the start go on; 1 is xenopsd's "log and continue" (the start goes on, stdout
goes to its debug log); 2 aborts the start with XAPI_HOOK_FAILED, whose ``stdout`` field is
what the operator reads. Nothing here may end in an accidental exit 1: every exception is
caught and the ``on_error`` policy chooses the status.
"""

import os
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

from . import config, decision, ledger, state
from .deadline import Deadline, backstop
from .decision import EXIT_GO, EXIT_LOG_AND_CONTINUE, EXIT_REFUSE
from .errors import BadArgument, NotACandidate, XsguardError, wire_error
from .model.charging import HOW_UNCHECKED, Entry
from .model.verdict import ascii_safe, ascii_safe_lines
from .xapi import Xapi

ALERT_DEADLINE = 10.0  # the alert is sent after the verdict: it may take longer


class Args(NamedTuple):
    vm_uuid: str
    reason: str
    domid: Optional[str]


def parse_argv(argv: List[str]) -> Args:
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


class Signal(NamedTuple):
    """A syslog line and a xapi alert about one VM."""

    syslog_line: str
    alert_name: str
    alert_body: str
    vm_uuid: str


class Journal:
    """The decision's log events, kept until the verdict is out, then written by ``publish``.

    The hook's exit status is what the VM start waits for; structlog's import, the log
    write, syslog and the xapi alert are not, so they happen after it (see ``publish``).
    """

    def __init__(self, **context: Any) -> None:
        self.context = context
        self.events: List[Any] = []
        self.signal: Optional[Signal] = None  # what to tell syslog and xapi, if anything
        self.counters: List[str] = []  # state.COUNTERS to bump

    def bind(self, **context: Any) -> "Journal":
        self.context.update(context)
        return self

    def _add(self, level: str, event: str, **fields: Any) -> None:
        self.events.append((level, event, dict(self.context, **fields)))

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._add("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._add("error", event, **fields)


def main(argv: Optional[List[str]] = None, operation: str = "start") -> int:
    """Run the hook; returns the exit status (never raises)."""
    started = time.monotonic()
    log = Journal(operation=operation)
    cfg = config.defaults()  # until the file is read: its log path, on_error = allow
    args: Optional[Args] = None
    progress: Dict[str, Any] = {}  # what is known of the VM so far: charged if it goes ahead unchecked
    try:
        cfg = config.load()
        args = parse_argv(sys.argv[1:] if argv is None else argv)
        log.bind(vm_uuid=args.vm_uuid, reason=args.reason, mode=cfg.policy["mode"])
        deadline = Deadline(cfg.policy["deadline"])
        with backstop(deadline):
            status, message = _decide(cfg, args, deadline, log, started, progress)
        write_out(message)
    except BaseException as exc:  # noqa: BLE001 - the status must be chosen, never defaulted
        status = _guard_error(cfg, exc, log, args, started, progress)
    try:
        publish(cfg, log)
    except BaseException:  # noqa: BLE001 - the log must not change the status
        pass
    return status


def publish(cfg: config.Config, log: Journal) -> None:
    """Write the journal to the decision log and signal, in a detached child.

    The parent returns at once so that the start goes on (or fails) without waiting. If no
    child can be made, the work is done here, late but not lost.
    """
    sys.stdout.flush()
    try:
        pid = os.fork()
    except OSError:
        _write_journal(cfg, log)
        return
    if pid > 0:
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _write_journal(cfg, log)
    finally:
        os._exit(0)


def _write_journal(cfg: config.Config, journal: Journal) -> None:
    from . import decisionlog

    decisionlog.configure(cfg.log["file"], cfg.log["syslog_socket"])
    log = decisionlog.get()
    for counter in journal.counters:
        try:
            state.bump(cfg, counter)
        except OSError as exc:
            log.warning("count_failed", counter=counter, error=str(exc))
    for level, event, fields in journal.events:
        getattr(log, level)(event, **fields)
    if journal.signal is not None:
        _send_signal(cfg, journal.signal, log)


def _decide(cfg: config.Config, args: Args, deadline: Deadline, log: Journal, started: float,
            progress: Dict[str, Any]) -> Any:
    operation = log.context["operation"]
    try:
        with Xapi(cfg.xapi["url"], deadline) as api:
            outcome = decision.admit(cfg, api, args.vm_uuid, deadline, progress=progress)
    except NotACandidate as exc:
        log.info("%s_not_checked" % operation, why=exc.message, duration_ms=_ms(started))
        return EXIT_GO, ""
    verdict, subject, policy = outcome.verdict, outcome.subject, outcome.policy
    figures = dict(
        vm_name=subject.vm.get("name_label", ""),
        host_uuid=subject.host.get("uuid", ""),
        host_name=subject.host_name,
        verdict=verdict.verdict,
        ceiling=verdict.binding.ceiling,
        need=verdict.need.total,
        checks=[c.as_json() for c in verdict.checks],
        breakdown=verdict.need.as_json()["breakdown"],
        promised_to=[o._asdict() for o in outcome.owed],
        lock_wait_ms=round(outcome.lock_wait * 1000, 1),
    )
    if outcome.ledger_note:
        log.warning("ledger_reset", note=outcome.ledger_note, **{k: figures[k] for k in ("vm_name", "host_name")})
    event = "%s_%s" % (operation, policy.event)
    if policy.event in ("admitted", "bypassed"):
        log.info(event, duration_ms=_ms(started), **figures)
        return policy.exit, ""
    log.warning(event, duration_ms=_ms(started), message=verdict.message, **figures)
    if policy.signalled:
        from . import alerts

        log.signal = Signal(alerts.syslog_line(verdict), alerts.ALERT_NAME, alerts.alert_body(verdict),
                            verdict.need.vm_uuid)
    if policy.exit == EXIT_REFUSE:
        log.counters.append("refused")
        return policy.exit, verdict.message
    if policy.exit == EXIT_LOG_AND_CONTINUE:
        return policy.exit, "xsguard (mode = warn) lets this start go on, but would refuse it:\n" + verdict.message
    return policy.exit, ""


def _send_signal(cfg: config.Config, sig: Signal, log: Any) -> None:
    """Syslog and a xapi alert: best effort, never a change to the verdict."""
    from . import alerts

    if cfg.log["syslog"]:
        try:
            alerts.send_syslog(cfg.log["syslog_socket"], sig.syslog_line)
        except OSError as exc:
            log.warning("syslog_failed", error=str(exc))
    if cfg.log["alerts"]:
        try:
            if alerts.claim_alert(state.path(cfg, state.ALERTS), sig.vm_uuid, cfg.log["alert_interval"], time.time()):
                with Xapi(cfg.xapi["url"], Deadline(ALERT_DEADLINE)) as api:
                    api.call("message.create", sig.alert_name, str(alerts.ALERT_PRIORITY), "VM", sig.vm_uuid,
                             sig.alert_body)
        except Exception as exc:  # noqa: BLE001 - an alert that fails must not change the verdict
            log.warning("alert_failed", error=str(wire_error(exc)))


def _guard_error(cfg: config.Config, exc: BaseException, log: Journal, args: Optional[Args], started: float,
                 progress: Dict[str, Any]) -> int:
    """xsguard itself failed: deny (exit 2), or allow (exit 1) loudly and still charge the VM."""
    on_error = cfg.policy["on_error"]
    err = wire_error(exc)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, XsguardError):
        err = XsguardError("interrupted (%s)" % type(exc).__name__)
    vm = args.vm_uuid if args else "?"
    operation = log.context["operation"]
    log.error("guard_error", error=err.code, detail=err.message, on_error=on_error, duration_ms=_ms(started))
    if on_error == "deny":
        _say("xsguard could not check this %s and is set to refuse when it fails ([policy] on_error = deny).\n"
             "What failed: %s\nFix the cause, or set on_error = allow in /etc/xsguard/xsguard.conf." % (
                 operation, err.message))
        return EXIT_REFUSE
    charged = _charge_unchecked(cfg, args, progress, log)
    line = "could not check the %s of VM %s; let through unchecked ([policy] on_error = allow), %s: %s" % (
        operation, vm, charged, err.message)
    log.error("%s_unchecked" % operation, error=err.code, detail=err.message, charged=charged,
              need=progress.get("need"), duration_ms=_ms(started))
    log.counters.append("unchecked")
    if args is not None:
        from . import alerts

        log.signal = Signal(ascii_safe(line), alerts.UNCHECKED_ALERT_NAME, ascii_safe_lines(line), args.vm_uuid)
    _say("xsguard " + line)
    return EXIT_LOG_AND_CONTINUE


def _charge_unchecked(cfg: config.Config, args: Optional[Args], progress: Dict[str, Any], log: Journal) -> str:
    """Enter a start let through unchecked in the ledger, without its lock; says what was charged."""
    if args is None:
        return "not charged (no VM named)"
    need = progress.get("need")
    entry = Entry(args.vm_uuid, progress.get("vm_name", ""), ledger.UNKNOWN_NEED if need is None else need,
                  state.now(), None, HOW_UNCHECKED)
    try:
        ledger.append_pending(cfg.ledger["path"], state.boot_id(cfg), entry)
    except OSError as exc:
        log.error("charge_failed", error=str(exc))
        return "NOT charged (%s)" % exc.strerror
    if need is None:
        return "charged its need once the next decision can compute it"
    return "charged its need of %d" % need


def _say(text: str) -> None:
    try:
        write_out(text)
    except Exception:  # noqa: BLE001 - stdout gone: the status is all that is left
        pass


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
