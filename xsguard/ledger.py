"""The per-host ledger file, its lock, and the charges of starts let through unchecked.

The lock is ``flock`` on a separate file, so the kernel releases it when a holder dies,
``kill -9`` included. Only admissions write the ledger (a refusal needs no write): the new
version replaces the old by rename, so a reader sees one or the other, never half of either.
The ledger belongs to one boot (its ``boot_id``): times in it are CLOCK_MONOTONIC seconds.

A start let through because xsguard could not decide in time must still be charged, but its
hook cannot wait for the lock: it appends a line to ``<ledger>.pending`` (no lock, one
``O_APPEND`` write) and the next decision folds those lines into the ledger under the lock.
"""

import errno
import fcntl
import json
import math
import os
import time
from contextlib import contextmanager

from . import state
from .deadline import Deadline
from .errors import DeadlineExceeded, XsguardError
from .model.charging import Entry
from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

VERSION = 2
UNKNOWN_NEED = -1  # an appended charge whose need was not known: computed by the next decision
APPENDED = ".pending"  # the appended charges' file (its name since the first release: an upgrade finds it)
TAKEN = APPENDED + ".taken"  # appended charges taken under the lock, removed once saved


class LedgerUnavailable(XsguardError):
    """The ledger's directory cannot be used (permissions, a full disk)."""

    code = "XSGUARD_LEDGER_UNAVAILABLE"


class Loaded(NamedTuple):
    """The ledger as read: its entries, or None when they must be rebuilt, and why."""

    entries: "Optional[Dict[str, Entry]]"
    note: "Optional[str]"  # what was wrong, when something was
    taken: bool = False  # the appended charges were taken (``take``): ``save`` removes them
    unfolded: "Tuple[Entry, ...]" = ()  # the appended charges, when ``entries`` is None: fold them into the rebuild


@contextmanager
def locked(path: str, deadline: Deadline, poll: float = 0.002) -> "Iterator[float]":
    """Hold the ledger's lock; yields the seconds spent waiting for it."""
    try:
        state.safe_directory(path)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise LedgerUnavailable("cannot open the ledger lock %s.lock: %s" % (path, exc.strerror), path)
    started = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if deadline.remaining() <= poll:
                raise DeadlineExceeded(
                    "waited %.2fs for the ledger lock %s.lock" % (time.monotonic() - started, path), path
                )
            time.sleep(poll)
        yield time.monotonic() - started
    finally:
        os.close(fd)  # closing releases the flock


def load(path: str, boot_id: str, set_aside: bool = False) -> Loaded:
    """The ledger's entries with the appended charges folded in, read as they stand (no lock).

    ``entries`` is None when the ledger is corrupt (then, with ``set_aside``, moved aside),
    unreadable, or an earlier boot's: the caller rebuilds it from live state.
    """
    return _read(path, boot_id, read_appended(path, boot_id), False, set_aside)


def take(path: str, boot_id: str) -> Loaded:
    """Under the lock: the ledger with the appended charges taken, ready for ``save``.

    The appended charges' file is renamed before it is read: a charge appended after the rename finds
    the file gone and is written again to a new one (``append_charge``), so none is lost
    between the read and the save. Charges taken but not yet saved (a refusal saves nothing,
    a process may die) stay in ``.pending.taken`` and are taken again; a charge read twice is
    the same charge.
    """
    taken = path + TAKEN
    if not os.path.lexists(taken):
        try:
            os.rename(path + APPENDED, taken)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LedgerUnavailable("cannot take the appended charges %s%s: %s" % (path, APPENDED, exc.strerror), path)
    appended = _read_lines(taken, boot_id) + read_appended(path, boot_id)
    return _read(path, boot_id, appended, os.path.lexists(taken), True)


def _read(path: str, boot_id: str, appended: "List[Entry]", taken: bool, set_aside: bool) -> Loaded:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return Loaded(fold({}, appended), None, taken)
    except IsADirectoryError:
        return _corrupt(path, "a directory", set_aside, taken, appended)
    except OSError as exc:
        return Loaded(None, "ledger %s is unreadable (%s): rebuilt from live state" % (path, exc.strerror),
                      taken, tuple(appended))
    try:
        entries = parse(raw, boot_id)
    except _EarlierBoot:
        return Loaded(None, None, taken, tuple(appended))  # its domains are gone: rebuilt quietly
    except ValueError as exc:
        return _corrupt(path, "corrupt (%s)" % str(exc)[:200], set_aside, taken, appended)
    return Loaded(fold(entries, appended), None, taken)


def _corrupt(path: str, why: str, set_aside: bool, taken: bool, appended: "List[Entry]") -> Loaded:
    """A ledger that is not one (corrupt, a directory): set aside under the lock, rebuilt from live state."""
    if not set_aside:
        return Loaded(None, "ledger %s is %s: rebuilt from live state" % (path, why), taken, tuple(appended))
    aside = state.set_aside(path)
    kept = "kept as %s" % aside if aside else "could not be set aside"
    return Loaded(None, "ledger %s was %s: %s, rebuilt from live state" % (path, why, kept), taken, tuple(appended))


class _EarlierBoot(ValueError):
    pass


def parse(raw: bytes, boot_id: str) -> "Dict[str, Entry]":
    """The entries of one ledger file; ValueError naming what is wrong."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(type(exc).__name__)
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise ValueError("not a version %d ledger (version %r)" % (VERSION, version))
    if doc.get("boot_id") != boot_id:
        raise _EarlierBoot()
    items = doc.get("entries")
    if not isinstance(items, list):
        raise ValueError("entries is not a list")
    entries = {}
    for item in items:
        entry = _entry(item)
        entries[entry.vm_uuid] = entry
    return entries


def _no_constant(name: str) -> "Any":
    raise ValueError("%s is not a number a ledger holds" % name)


def _entry(item: "Any") -> Entry:
    if not isinstance(item, dict):
        raise ValueError("an entry is not an object")
    try:
        need = item["need"]
        at = item["admitted_at"]
        domid = item.get("domid")
        uuid, name, how = item["vm_uuid"], item.get("vm_name", ""), item.get("how", "checked")
        peak = item.get("peak", 0)
        covered_at = item.get("covered_at")
    except KeyError as exc:
        raise ValueError("an entry has no %s" % exc)
    if not (isinstance(need, int) and need >= UNKNOWN_NEED and need < 2 ** 31):
        raise ValueError("need %r is not a port count" % (need,))
    if not (isinstance(at, (int, float)) and math.isfinite(at)):
        raise ValueError("admitted_at %r is not a time" % (at,))
    if not (domid is None or isinstance(domid, int) and 0 <= domid < 2 ** 31):
        raise ValueError("domid %r is not a domain id" % (domid,))
    if not all(isinstance(v, str) for v in (uuid, name, how)):
        raise ValueError("vm_uuid, vm_name and how must be strings")
    if not (isinstance(peak, int) and 0 <= peak < 2 ** 31):
        raise ValueError("peak %r is not a port count" % (peak,))
    if not (covered_at is None or isinstance(covered_at, (int, float)) and math.isfinite(covered_at)):
        raise ValueError("covered_at %r is not a time" % (covered_at,))
    return Entry(uuid, name, need, float(at), domid, how, peak, None if covered_at is None else float(covered_at))


def save(path: str, boot_id: str, entries: "Dict[str, Entry]", loaded: "Optional[Loaded]" = None) -> None:
    """Replace the ledger (no fsync: see ``sync``); the appended charges ``loaded`` took are now in it."""
    doc = {"version": VERSION, "boot_id": boot_id,
           "entries": [e.as_json() for e in sorted(entries.values())]}
    try:
        state.write_atomic(path, json.dumps(doc, sort_keys=True).encode("utf-8"))
    except OSError as exc:
        raise LedgerUnavailable("cannot write the ledger %s: %s" % (path, exc.strerror), path)
    if loaded is not None and loaded.taken:
        try:
            os.unlink(path + TAKEN)
        except OSError:
            pass  # taken again by the next decision: the same charges


def sync(path: str) -> None:
    """Flush the ledger to the disk, after the lock is released (best effort).

    Not needed for correctness: a crash that loses the page cache ends every domain the
    ledger speaks of, and the next boot's ledger starts anew.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        state.sync_directory(path)
    except OSError:
        pass


# appended charges


def append_charge(path: str, boot_id: str, entry: Entry) -> None:
    """Charge a start let through unchecked, without the lock: one appended line (OSError)."""
    line = json.dumps(dict(entry.as_json(), boot_id=boot_id), sort_keys=True).encode("utf-8") + b"\n"
    state.safe_directory(path)
    for _ in range(3):
        fd = os.open(path + APPENDED, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            os.write(fd, line)  # one write of a short line: appended whole
            written = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        try:
            if os.stat(path + APPENDED).st_ino == written:
                return
        except FileNotFoundError:
            pass  # taken (renamed) as this line went in: write it again (a repeat is harmless)


def read_appended(path: str, boot_id: str) -> "List[Entry]":
    """The appended charges of this boot (lines that do not parse are skipped)."""
    return _read_lines(path + APPENDED, boot_id)


def _read_lines(appended_path: str, boot_id: str) -> "List[Entry]":
    try:
        with open(appended_path, "rb") as handle:
            raw = handle.read(4 * 1024 * 1024)
    except OSError:
        return []
    found = []
    for line in raw.splitlines():
        try:
            item = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
            if isinstance(item, dict) and item.get("boot_id") == boot_id:
                found.append(_entry(item))
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
    return found


def fold(entries: "Dict[str, Entry]", appended: "Iterable[Entry]") -> "Dict[str, Entry]":
    """The entries with the appended charges over them: the later charge of a VM wins, its peak kept."""
    merged = dict(entries)
    for entry in appended:
        earlier = merged.get(entry.vm_uuid)
        if earlier is None or earlier.admitted_at <= entry.admitted_at:
            merged[entry.vm_uuid] = entry._replace(peak=max(entry.peak, earlier.peak if earlier else 0))
    return merged
