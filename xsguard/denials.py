"""Read refusals (starts, migrations, resumes) back from the decision log, rotated and compressed files included."""

import calendar
import glob
import gzip
import json
import re
import time

from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Optional

REFUSED = "_refused"  # the end of every refusal's event: start_refused, migrate_refused, resume_refused
_MARKER = '%s"' % REFUSED
_RELATIVE = re.compile(r"(\d+)([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Denials(NamedTuple):
    records: "List[Dict[str, Any]]"  # newest first
    corrupt: int  # lines that did not parse, skipped


def parse_since(text: str, now: "Optional[float]" = None) -> float:
    """``2h``, ``30m``, ``1d`` ago, or an ISO time (UTC unless it says otherwise) -> epoch seconds."""
    now = time.time() if now is None else now
    match = _RELATIVE.match(text.strip())
    if match:
        digits = match.group(1)
        if len(digits) > 12:  # more than 30000 years: no log reaches back so far
            raise ValueError("since %s...%s reaches back too far" % (digits[:12], match.group(2)))
        return now - int(digits) * _UNITS[match.group(2)]
    return iso_to_epoch(text.strip())


def iso_to_epoch(text: str) -> float:
    cleaned = text.rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(cleaned, fmt)) + _fraction(cleaned, fmt)
        except ValueError:
            continue
    raise ValueError("since must be like 2h, 30m, 1d or 2026-11-26T08:00, not %r" % text[:40])


def _fraction(text: str, fmt: str) -> float:
    return float("0." + text.rsplit(".", 1)[1]) if fmt.endswith(".%f") else 0.0


def log_files(path: str) -> "List[str]":
    """The log and its rotations (``.1``, ``.2.gz``, ``-20261126.gz``), oldest first."""
    rotated = [p for p in glob.glob(glob.escape(path) + "[.-]*")
               if re.search(r"[.-]\d+(\.gz)?\Z", p[len(path):])]

    def age(p: str) -> "Any":
        suffix = p[len(path) + 1:].split(".")[0]
        return (0, -int(suffix)) if len(suffix) < 6 else (1, suffix)

    return sorted(rotated, key=age) + [path]


def _lines(path: str) -> "Iterator[str]":
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                yield line
    except (OSError, EOFError):
        return


def read(path: str, since: "Optional[float]" = None, vm: "Optional[str]" = None,
         host: "Optional[str]" = None) -> Denials:
    """Refusals, newest first, filtered by time, VM (uuid or name) and host (uuid or name)."""
    found = []
    corrupt = 0
    for name in log_files(path):
        for line in _lines(name):
            if _MARKER not in line:
                if line.strip() and not line.lstrip().startswith("{"):
                    corrupt += 1
                continue
            if (vm and vm not in line) or (host and host not in line):
                continue  # cheap pre-filter; checked exactly below
            try:
                record = json.loads(line)
                stamp = _stamp(record)
            except (ValueError, KeyError, TypeError, RecursionError):
                corrupt += 1
                continue
            if not str(record.get("event", "")).endswith(REFUSED):
                continue
            if since is not None and stamp < since:
                continue
            if vm and vm not in (record.get("vm_uuid"), record.get("vm_name")):
                continue
            if host and host not in (record.get("host_uuid"), record.get("host_name")):
                continue
            found.append(record)
    found.sort(key=lambda r: r["time"], reverse=True)
    return Denials(found, corrupt)


def _stamp(record: "Any") -> float:
    """The record's time in epoch seconds; ValueError unless it is a refusal as xsguard writes it."""
    if not isinstance(record, dict) or not isinstance(record.get("time"), str):
        raise ValueError("not a decision record with a time")
    if not isinstance(record.get("checks", []), list) or not all(isinstance(c, dict) for c in record.get("checks", [])):
        raise ValueError("checks is not a list of ceilings")
    return iso_to_epoch(record["time"])


def operation_of(record: "Dict[str, Any]") -> str:
    """What was refused (``start``, ``migrate``, ``resume``): the record's operation, else its event's."""
    return str(record.get("operation") or str(record.get("event", "start")).rsplit(REFUSED, 1)[0])


def summary(records: "List[Dict[str, Any]]") -> "List[Dict[str, Any]]":
    """Counts by VM, host, operation and hour, with the ceiling that bound, busiest first."""
    groups: Dict[Any, Dict[str, Any]] = {}
    for rec in records:
        key = (rec.get("vm_uuid"), rec.get("host_uuid"), operation_of(rec), rec["time"][:13])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "vm_uuid": rec.get("vm_uuid"), "vm_name": rec.get("vm_name"),
                "host_uuid": rec.get("host_uuid"), "host_name": rec.get("host_name"), "operation": key[2],
                "hour": rec["time"][:13] + ":00Z", "count": 0, "ceilings": {},
            }
        group["count"] += 1
        ceiling = rec.get("ceiling", "?")
        group["ceilings"][ceiling] = group["ceilings"].get(ceiling, 0) + 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["hour"]), reverse=False)


