"""Ceilings read from the kernel's boot lines, cached for the rest of that boot.

The boot lines (the event-channel ABI, ``NR_IRQS``) leave ``kern.log`` at its first
rotation; the ceilings they gave hold until dom0 reboots. So what they said is cached in the
state directory under the boot's id (``state.boot_id``) and used for as long as the id is the
same; so is a search that did not find a line, with why it fell short if it did (a boot line
never comes back once its sources have lost it, and a search cut short would be cut short
again: no later decision of the boot pays for it). A hook's search cut short by its time is
kept marked ``retry``: a caller nobody waits on (xsguard-rrdd at start, ``xsguard status``)
searches once more with its own time, and what it finds, or not, is kept for the boot. A file
that is lost, corrupt or another boot's means reading the boot lines again.
"""

import fcntl
import json
import os

from . import state
from .model.ceilings import BOOT_LOG, Ceiling
from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict

CACHED_NOTE = ", kept since this boot's first reading"


def searched(kernel_log: str, kernel_ring: str) -> str:
    """The sources a search reads (``bootlog``), as a warning names them and an ``Unknown`` keeps them."""
    return "%s, its rotations or %s" % (kernel_log, kernel_ring)


class Unknown(NamedTuple):
    """A ceiling whose boot line a search did not find."""

    sources: str  # the sources searched (another set of sources is searched again)
    where: str  # those sources, and why the search fell short if it did (what the warning says)
    retry: bool = False  # a hook's search cut by its time: a caller nobody waits on searches again


class Cached(NamedTuple):
    """What this boot's first readings found, and what they searched for in vain, by ceiling name."""

    ceilings: "Dict[str, Ceiling]"
    unknown: "Dict[str, Unknown]"


def load(path: str, boot_id: str) -> Cached:
    """What is cached for this boot (nothing if none, another boot's, or unusable)."""
    try:
        with open(path, "rb") as handle:
            doc = json.loads(handle.read(65536).decode("utf-8"))
        if doc.get("boot_id") != boot_id:
            return Cached({}, {})
        ceilings = {}
        for name, (limit, basis, where) in doc["ceilings"].items():
            if not (isinstance(limit, int) and 0 < limit < 2 ** 31):
                return Cached({}, {})
            ceilings[name] = Ceiling(str(name), limit, BOOT_LOG, str(basis), str(where))
        unknown = {str(name): Unknown(str(fields[0]), str(fields[1]), fields[2:3] == [True])
                   for name, fields in doc.get("unknown", {}).items() if len(fields) in (2, 3)}
        return Cached(ceilings, unknown)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return Cached({}, {})


def save(path: str, boot_id: str, cached: Cached) -> None:
    """Cache these for this boot (best effort: errors ignored)."""
    doc = {"boot_id": boot_id, "ceilings": {c.name: [c.limit, c.basis, c.where] for c in cached.ceilings.values()},
           "unknown": {name: [u.sources, u.where, u.retry] for name, u in cached.unknown.items()}}
    try:
        state.write_atomic(path, json.dumps(doc).encode("utf-8"))
    except OSError:
        pass


def from_cache(ceiling: Ceiling) -> Ceiling:
    """The same ceiling, its source saying it comes from the cached reading."""
    return ceiling if ceiling.where.endswith(CACHED_NOTE) else ceiling._replace(where=ceiling.where + CACHED_NOTE)


def first_this_boot(path: str, boot_id: str) -> bool:
    """True once per boot: the marker at ``path`` then names this boot (under its own lock, so
    that one of several processes gets True). True also when the marker cannot be kept."""
    mark = ("boot %s\n" % boot_id).encode("ascii", "replace")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.read(fd, len(mark) + 1) == mark:
            return False
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, mark)
        return True
    except OSError:
        return True
    finally:
        os.close(fd)
