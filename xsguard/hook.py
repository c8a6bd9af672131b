"""The vm-pre-start hook: argv and exit status in, a decision out.

xenopsd runs it with ``-vmuuid <uuid> -reason <reason>`` and an environment of only PATH.
Exit 0 lets the start go on; 1 is xenopsd's "log and continue" (the start goes on, stdout
goes to its debug log); 2 aborts the start with XAPI_HOOK_FAILED, whose ``stdout`` field is
what the operator reads. Nothing here may end in an accidental exit 1: every exception is
caught and the ``on_error`` policy chooses the status.
"""

import os
import signal
import sys
import time
from typing import Any, List, NamedTuple, Optional

from . import config, engine
from .deadline import Deadline
from .errors import BadArgument, DeadlineExceeded, NotACandidate, XsguardError, wire_error
from .verdict import ascii_safe_lines
from .xapi import Xapi

EXIT_GO = 0
EXIT_LOG_AND_CONTINUE = 1
EXIT_REFUSE = 2
BACKSTOP_GRACE = 0.25  # seconds past the deadline before the alarm interrupts whatever runs
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


def _alarm(signum: int, frame: Any) -> None:
    raise DeadlineExceeded("the hook ran past its deadline")


def write_out(text: str) -> None:
    """stdout as ASCII bytes: with no LANG, Python 3.6 would refuse anything else."""
    if text:
        sys.stdout.buffer.write((ascii_safe_lines(text) + "\n").encode("ascii"))
        sys.stdout.flush()


class Journal:
    """The decision's log events, kept until the verdict is out, then written by ``publish``.

    The hook's exit status is what the VM start waits for; structlog's import, the log
    write, syslog and the xapi alert are not, so they happen after it (see ``publish``).
    """

    def __init__(self, **context: Any) -> None:
        self.context = context
        self.events: List[Any] = []
        self.refusal: Any = None  # the Verdict to signal (syslog, alert), if any

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


def main(argv: Optional[List[str]] = None) -> int:
    """Run the hook; returns the exit status (never raises)."""
    started = time.monotonic()
    log = Journal()
    cfg = config.defaults()  # until the file is read: its log path, on_error = allow
    args: Optional[Args] = None
    try:
        cfg = config.load()
        args = parse_argv(sys.argv[1:] if argv is None else argv)
        log.bind(vm_uuid=args.vm_uuid, reason=args.reason, mode=cfg.policy["mode"])
        deadline = Deadline(cfg.policy["deadline"])
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, cfg.policy["deadline"] + BACKSTOP_GRACE)
        try:
            status, message = _decide(cfg, args, deadline, log, started)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        write_out(message)
    except BaseException as exc:  # noqa: BLE001 - the status must be chosen, never defaulted
        status = _guard_error(exc, cfg.policy["on_error"], log, args, started)
    try:
        publish(cfg, log)
    except BaseException:  # noqa: BLE001 - the log must not change the status
        pass
    return status


def publish(cfg: config.Config, log: Journal) -> None:
    """Write the journal to the decision log and signal a refusal, in a detached child.

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

    decisionlog.configure(cfg.log["file"])
    log = decisionlog.get()
    if journal.refusal is not None:
        _signal_refusal(cfg, journal.refusal, log)
    for level, event, fields in journal.events:
        getattr(log, level)(event, **fields)


def _decide(cfg: config.Config, args: Args, deadline: Deadline, log: Any, started: float) -> Any:
    mode = cfg.policy["mode"]
    try:
        with Xapi(cfg.xapi["url"], deadline) as api:
            outcome = engine.decide(cfg, api, args.vm_uuid, deadline, record=True)
            verdict = outcome.verdict
            subject = outcome.subject
            common = dict(
                vm_name=subject.vm.get("name_label", ""),
                host_uuid=subject.host.get("uuid", ""),
                host_name=subject.host.get("name_label", ""),
            )
            if outcome.ledger_note:
                log.warning("ledger_reset", note=outcome.ledger_note, **common)
            if verdict is None:
                log.info("start_bypassed", key="other_config:%s=%s" % (engine.BYPASS_KEY, engine.BYPASS_VALUE),
                         duration_ms=_ms(started), **common)
                return EXIT_GO, ""
            figures = dict(
                common,
                verdict=verdict.verdict,
                ceiling=verdict.binding.ceiling,
                need=verdict.need.total,
                checks=[c.as_json() for c in verdict.checks],
                breakdown=verdict.need.as_json()["breakdown"],
                promised_to=[o._asdict() for o in outcome.owed],
                lock_wait_ms=round(outcome.lock_wait * 1000, 1),
            )
            if verdict.admitted:
                log.info("start_admitted", duration_ms=_ms(started), **figures)
                return EXIT_GO, ""
            if mode != "off":
                log.refusal = verdict
            event = {"enforce": "start_refused", "warn": "start_warned", "off": "start_would_refuse"}[mode]
            log.warning(event, duration_ms=_ms(started), message=verdict.message, **figures)
    except NotACandidate as exc:
        log.info("start_not_checked", why=exc.message, duration_ms=_ms(started))
        return EXIT_GO, ""
    if mode == "enforce":
        return EXIT_REFUSE, verdict.message
    if mode == "warn":
        warning = "xsguard (mode = warn) lets this start go on, but would refuse it:\n"
        return EXIT_LOG_AND_CONTINUE, warning + verdict.message
    return EXIT_GO, ""


def _signal_refusal(cfg: config.Config, verdict: Any, log: Any) -> None:
    """Syslog and a xapi alert: best effort, never a change to the verdict."""
    from . import alerts

    if cfg.log["syslog"]:
        try:
            alerts.send_syslog(cfg.log["syslog_socket"], alerts.syslog_line(verdict))
        except OSError as exc:
            log.warning("syslog_failed", error=str(exc))
    if cfg.log["alerts"]:
        try:
            state = os.path.join(os.path.dirname(cfg.ledger["path"]) or ".", "alerts.json")
            if alerts.claim_alert(state, verdict.need.vm_uuid, cfg.log["alert_interval"], time.time()):
                with Xapi(cfg.xapi["url"], Deadline(ALERT_DEADLINE)) as api:
                    api.call("message.create", alerts.ALERT_NAME, str(alerts.ALERT_PRIORITY), "VM",
                             verdict.need.vm_uuid, alerts.alert_body(verdict))
        except Exception as exc:  # noqa: BLE001 - an alert that fails must not change the verdict
            log.warning("alert_failed", error=str(wire_error(exc)))


def _guard_error(exc: BaseException, on_error: str, log: Journal, args: Optional[Args], started: float) -> int:
    """xsguard itself failed: log it, then allow (exit 1) or deny (exit 2) as configured."""
    err = wire_error(exc)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, XsguardError):
        err = XsguardError("interrupted (%s)" % type(exc).__name__)
    log.error("guard_error", error=err.code, detail=err.message, on_error=on_error, duration_ms=_ms(started))
    vm = args.vm_uuid if args else "?"
    try:
        if on_error == "deny":
            write_out(
                "xsguard could not check this start and is set to refuse starts when it fails"
                " ([policy] on_error = deny).\nWhat failed: %s\nFix the cause, set on_error = allow in"
                " /etc/xsguard/xsguard.conf, or bypass the check for this VM:\n"
                "xe vm-param-set uuid=%s other-config:xsguard=skip" % (err.message, vm)
            )
            return EXIT_REFUSE
        write_out("xsguard could not check this start; allowed ([policy] on_error = allow): %s" % err.message)
    except Exception:  # noqa: BLE001 - stdout gone: the status is all that is left
        pass
    return EXIT_REFUSE if on_error == "deny" else EXIT_LOG_AND_CONTINUE


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
