"""Operator-facing signals of a refusal: a syslog line and a rate-limited xapi message."""

import fcntl
import json
import math
import os
import socket

from . import state
from .model.verdict import Verdict, ascii_safe

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict

# the xapi message raised for a refusal, and for an operation let through unchecked, by operation
REFUSED_ALERTS = {"start": "XSGUARD_START_REFUSED", "migrate": "XSGUARD_MIGRATION_REFUSED",
                  "resume": "XSGUARD_RESUME_REFUSED"}
UNCHECKED_ALERTS = {"start": "XSGUARD_START_UNCHECKED", "migrate": "XSGUARD_MIGRATION_UNCHECKED",
                    "resume": "XSGUARD_RESUME_UNCHECKED"}
OVER_CEILING_ALERT_NAME = "XSGUARD_REBOOT_OVER_CEILING"
CONFIG_ALERT_NAME = "XSGUARD_CONFIG_ERROR"
ALERT_PRIORITY = 3  # 1 highest .. 5; XenCenter shows 3 as a warning
LOG_DAEMON_WARNING = 3 * 8 + 4


def syslog_line(verdict: Verdict) -> str:
    b = verdict.binding
    return ascii_safe(
        "refused VM '%s' (%s) on host '%s': needs %d, %d free under %s (limit %s, used %d, promised %d)"
        % (verdict.need.vm_name, verdict.need.vm_uuid, verdict.host_name, b.need,
           max(b.free or 0, 0), b.ceiling, b.limit, b.used, b.promised)
    )


def over_ceiling_line(verdict: Verdict) -> str:
    """The syslog line of a reboot let through over a ceiling ([policy] reboot = admit)."""
    b = verdict.binding
    return ascii_safe(
        "admitted the reboot of VM '%s' (%s) on host '%s' over %s: needs %d, %d free (limit %s, used %d, promised %d);"
        " a refusal would have left it halted ([policy] reboot = admit)"
        % (verdict.need.vm_name, verdict.need.vm_uuid, verdict.host_name, b.ceiling, b.need,
           b.free or 0, b.limit, b.used, b.promised)
    )


def over_ceiling_body(verdict: Verdict) -> str:
    return over_ceiling_line(verdict) + "\n\n" + alert_body(verdict)


def migration_line(answer: "Dict[str, Any]") -> str:
    """The syslog line of a migration refused by the destination (its ``admit`` answer)."""
    return ascii_safe(
        "refused to migrate VM '%s' (%s) to host '%s': needs %s, %s free under %s (limit %s, used %s, promised %s)"
        % (answer.get("vm_name"), answer.get("vm_uuid"), answer.get("host"), answer.get("need"),
           max(answer.get("free") or 0, 0), answer.get("ceiling"), answer.get("limit"), answer.get("used"),
           answer.get("promised"))
    )


def send_syslog(socket_path: str, line: str) -> None:
    """One datagram in the syslog protocol to dom0's syslog socket (raises OSError)."""
    payload = ("<%d>xsguard[%d]: %s" % (LOG_DAEMON_WARNING, os.getpid(), line)).encode("ascii", "replace")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.settimeout(0.5)
        sock.connect(socket_path)
        sock.send(payload)
    finally:
        sock.close()


def alert_body(verdict: Verdict) -> str:
    return verdict.message + "\n\n" + json.dumps(
        {k: v for k, v in verdict.as_json().items() if k not in ("message", "breakdown")}, sort_keys=True
    )


def claim_alert(state_path: str, vm_uuid: str, interval: float, now: float) -> bool:
    """True if no alert for this VM was raised in the last ``interval`` s (and record this one).

    A file that does not hold a map of uuids to times is replaced: at worst one alert too many.
    """
    state.safe_directory(state_path)
    fd = os.open(state_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _read_times(state_path)
        if now - last.get(vm_uuid, float("-inf")) < interval:
            return False
        last = {k: v for k, v in last.items() if now - v < interval}
        last[vm_uuid] = now
        state.write_atomic(state_path, json.dumps(last).encode("utf-8"))
        return True
    finally:
        os.close(fd)


def _read_times(state_path: str) -> "Dict[str, float]":
    try:
        with open(state_path, "rb") as handle:
            doc = json.loads(handle.read(1024 * 1024).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
