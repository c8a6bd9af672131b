"""The journal: a decision's log events and signals, kept until its status is out, then written.

The hook's exit status is what the VM start waits for; structlog's import, the decision
log's write, the counters, syslog and the xapi alert are not: ``publish`` does them in a
detached child, after the status is final, and nothing it does can change that status.
"""

import os
import sys
import time

from . import ledger, state
from .config import Config
from .deadline import Deadline
from .errors import XsguardError, wire_error
from .namedtuple import NamedTuple
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

ALERT_DEADLINE = 10.0  # the alert is sent after the verdict: it may take longer


class Notice(NamedTuple):
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

    def __init__(self, **context: "Any") -> None:
        self.context = context
        self.events: List[Any] = []
        self.notices: List[Notice] = []  # what to tell syslog and xapi, if anything
        self.counters: List[str] = []  # state.COUNT_* to bump
        self.unknown_ceilings: List[Any] = []  # ceilings whose limit is unknown (``ceiling_unknown``)
        self.host: Dict[str, str] = {}
        self.sync_ledger: Optional[str] = None  # the ledger to flush to the disk, once the status is out

    def bind(self, **context: "Any") -> "Journal":
        self.context.update(context)
        return self

    def _add(self, level: str, event: str, **fields: "Any") -> None:
        self.events.append((level, event, dict(self.context, **fields)))

    def info(self, event: str, **fields: "Any") -> None:
        self._add("info", event, **fields)

    def warning(self, event: str, **fields: "Any") -> None:
        self._add("warning", event, **fields)

    def error(self, event: str, **fields: "Any") -> None:
        self._add("error", event, **fields)


def signal_config_error(log: Journal, cfg: Config, error: XsguardError, vm_uuid: str) -> None:
    """The configuration does not parse: the decision about VM ``vm_uuid`` goes on with ``cfg`` (the
    last one that did, else the defaults) and says so loudly, whichever host decides (the hook, the
    plugin's ``admit``): the decision log, a counter, syslog and a xapi alert naming the VM."""
    from . import alerts
    from .model.verdict import ascii_safe, ascii_safe_lines

    line = "configuration error: %s; the %s of VM %s is decided with %s" % (
        error.message, log.context["operation"], vm_uuid, cfg.source)
    log.error("config_error", error=error.code, detail=error.message, using=cfg.source)
    log.counters.append(state.COUNT_CONFIG_ERROR)
    log.notices.append(Notice(ascii_safe(line), alerts.CONFIG_ALERT_NAME, ascii_safe_lines(line), vm_uuid))


def publish(cfg: Config, log: Journal) -> None:
    """Write the journal to the decision log and signal, in a detached child.

    The parent returns at once so that the start goes on (or fails) without waiting. If no
    child can be made, the work is done here, late but not lost. Nor is a child forked while
    another thread runs (a host ``ask`` still waits on, past its deadline): the child could
    block forever on a lock that thread held at the fork, so the work is done here too.
    """
    try:
        sys.stdout.flush()  # nothing left for the child to write twice
    except Exception:  # noqa: BLE001 - stdout gone (None, or a closed pipe): the journal is still written
        pass
    if not _alone(FORK_GRACE):
        _write_journal(cfg, log)
        return
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


FORK_GRACE = 0.5  # seconds ``publish`` waits for other threads to end: their calls end at the deadline


def _alone(grace: float) -> bool:
    """True once this is the process's only thread, waiting up to ``grace`` seconds for the others."""
    threading = sys.modules.get("threading")  # never imported: no other thread (and no import here)
    if threading is None:
        return True
    until = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, until - time.monotonic()))
    return threading.active_count() == 1


def _write_journal(cfg: Config, journal: Journal) -> None:
    from . import decisionlog, report

    decisionlog.configure(cfg.log.file, cfg.log.syslog_socket)
    log = decisionlog.get()
    for counter in journal.counters:
        try:
            state.bump(cfg, counter)
        except OSError as exc:
            log.warning("count_failed", counter=counter, error=str(exc))
    for level, event, fields in journal.events:
        getattr(log, level)(event, **fields)
    for fields in report.ceiling_unknown_records(cfg, journal.unknown_ceilings):
        log.warning("ceiling_unknown", **dict(journal.host, **fields))
    for notice in journal.notices:
        send_notice(cfg, notice, log)
    if journal.sync_ledger:
        try:
            ledger.sync(journal.sync_ledger)
        except Exception as exc:  # noqa: BLE001 - the ledger is written; only its flush failed
            log.warning("sync_failed", error=str(wire_error(exc)))


def send_notice(cfg: Config, sig: Notice, log: "Any") -> None:
    """Syslog and a xapi alert: best effort, never a change to the verdict."""
    from . import alerts

    if cfg.log.syslog:
        try:
            alerts.send_syslog(cfg.log.syslog_socket, sig.syslog_line)
        except OSError as exc:
            log.warning("syslog_failed", error=str(exc))
    if cfg.log.alerts:
        try:
            if alerts.claim_alert(state.path(cfg, state.ALERTS), "%s:%s" % (sig.alert_name, sig.vm_uuid),
                                 cfg.log.alert_interval, time.time()):
                with Xapi(cfg.xapi.url, Deadline(ALERT_DEADLINE)) as api:
                    api.call("message.create", sig.alert_name, str(alerts.ALERT_PRIORITY), "VM", sig.vm_uuid,
                             sig.alert_body)
        except Exception as exc:  # noqa: BLE001 - an alert that fails must not change the verdict
            log.warning("alert_failed", error=str(wire_error(exc)))
