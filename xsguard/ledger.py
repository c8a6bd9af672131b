"""The per-host ledger file and its lock.

The lock is ``flock`` on a separate file, so the kernel releases it when a holder dies,
``kill -9`` included. Writes go to a temporary file that is fsynced and renamed over the
ledger, so a reader sees the old version or the new one, never half of either. A ledger that
does not parse is renamed aside for inspection and the caller starts from an empty one.
"""

import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

from .deadline import Deadline
from .errors import DeadlineExceeded, XsguardError
from .promises import Entry

VERSION = 1


class LedgerUnavailable(XsguardError):
    """The ledger's directory cannot be used (permissions, a full disk)."""

    code = "XSGUARD_LEDGER_UNAVAILABLE"


@contextmanager
def locked(path: str, deadline: Deadline, poll: float = 0.005) -> Iterator[float]:
    """Hold the ledger's lock; yields the seconds spent waiting for it."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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


def load(path: str, set_aside: bool = True) -> Tuple[Dict[str, Entry], Optional[str]]:
    """The ledger's entries, and a note if it was corrupt (and, with ``set_aside``, moved aside)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, _set_aside(path, "unreadable (%s)" % exc.strerror, set_aside)
    try:
        doc = json.loads(raw.decode("utf-8"))
        if doc.get("version") != VERSION:
            raise ValueError("version %r" % doc.get("version"))
        entries = {}
        for item in doc["entries"]:
            entry = Entry(
                vm_uuid=str(item["vm_uuid"]),
                vm_name=str(item.get("vm_name", "")),
                need=int(item["need"]),
                admitted_at=float(item["admitted_at"]),
                domid=None if item.get("domid") is None else int(item["domid"]),
            )
            entries[entry.vm_uuid] = entry
        return entries, None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        return {}, _set_aside(path, "corrupt (%s)" % exc, set_aside)


def _set_aside(path: str, why: str, move: bool) -> str:
    if not move:
        return "ledger %s is %s: read as empty" % (path, why)
    aside = "%s.corrupt-%d" % (path, int(time.time() * 1000))
    try:
        os.rename(path, aside)
    except OSError as exc:
        return "ledger %s was %s and could not be set aside: %s" % (path, why, exc.strerror)
    return "ledger %s was %s: kept as %s, rebuilt from live state" % (path, why, aside)


def save(path: str, entries: Dict[str, Entry]) -> None:
    """Replace the ledger atomically: temporary file, fsync, rename, fsync the directory."""
    doc = {"version": VERSION, "entries": [e.as_json() for e in sorted(entries.values())]}
    data = json.dumps(doc, sort_keys=True).encode("utf-8")
    directory = os.path.dirname(path) or "."
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise LedgerUnavailable("cannot write the ledger %s: %s" % (path, exc.strerror), path)
