"""The state directory and its files: one place names them, one helper writes them.

Everything xsguard keeps between runs lives in the directory of ``[ledger] path``
(``/run/xsguard`` by default: a tmpfs cleared at boot, as everything here is this boot's,
and a full ``/var`` cannot stop a charge): the ledger and its lock, the ceilings kept for this boot,
the alert times, the counters, the boot an unknown ceiling was last logged in. A reader sees
a file's old version or its new one, never half.
"""

import errno
import os
import stat
import time

from .config import Config
from .errors import UnsafeDirectory

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import List, Optional

LEDGER = "ledger.json"
CEILINGS = "ceilings.json"
ALERTS = "alerts.json"
CEILING_UNKNOWN = "ceiling_unknown"  # the boot id of the last boot whose unknown ceiling was logged
# counters, each a file count.<name>: one byte per event, the count is its size
COUNT_REFUSED = "refused"
COUNT_UNCHECKED = "unchecked"
COUNT_AUDIT_UNDER = "audit_under"
COUNT_CONFIG_ERROR = "config_error"  # decisions made with the last configuration that parsed, or the defaults
COUNT_OVER_CEILING = "over_ceiling"  # reboots admitted over a ceiling ([policy] reboot = admit)


def directory(cfg: Config) -> str:
    return os.path.dirname(cfg.ledger.path) or "."


def path(cfg: Config, name: str) -> str:
    """The path of one state file (the ledger keeps its configured path)."""
    if name == LEDGER:
        return cfg.ledger.path
    return os.path.join(directory(cfg), name)


def check_directory(directory: str) -> None:
    """UnsafeDirectory unless ``directory`` is owned by root or this user and writable by no one else.

    In a directory others can write to, a file xsguard opens could be their symlink or link.
    """
    st = os.stat(directory or ".")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(errno.ENOTDIR, "not a directory", directory)
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafeDirectory(errno.EPERM, "unsafe directory: owned by uid %d, not root" % st.st_uid, directory)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDirectory(errno.EPERM, "unsafe directory: mode %04o lets others write in it"
                              % stat.S_IMODE(st.st_mode), directory)


def safe_directory(target: str) -> str:
    """The directory holding ``target``, made (0700) if missing, checked by ``check_directory``."""
    directory = os.path.dirname(target) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    check_directory(directory)
    return directory


def write_atomic(target: str, data: bytes, fsync: bool = False) -> None:
    """Replace ``target`` with ``data``: a temporary file renamed over it (OSError on failure).

    With ``fsync`` the data and the rename reach the disk before this returns. The temporary
    file never stays behind; it is created new (O_EXCL), never opened through a link.
    """
    safe_directory(target)
    tmp = "%s.tmp-%d" % (target, os.getpid())
    try:
        try:
            os.unlink(tmp)  # left by a killed process that had this pid
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        sync_directory(target)


def sync_directory(target: str) -> None:
    """fsync the directory holding ``target`` (its renames reach the disk)."""
    fd = os.open(os.path.dirname(target) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(target: str) -> "Optional[str]":
    """Rename a corrupt file for inspection; its new name, or None if it could not be moved."""
    aside = "%s.corrupt-%d" % (target, int(time.time() * 1000))
    try:
        os.rename(target, aside)
    except OSError:
        return None
    return aside


def boot_id(cfg: Config) -> str:
    """This boot's id: what is kept under another id (the ledger, appended charges, the ceilings
    read at boot) is another boot's, and is not trusted.

    The kernel's (``[dom0] boot_id``, a UUID). If it is unreadable, empty or not a UUID, an id
    derived from the boot time (``btime-<seconds>`` from ``[dom0] proc_stat``: it changes at a
    reboot, and also if the clock is stepped, which only costs a rebuild of what was kept);
    failing both, an id of this process's own, so that nothing kept is ever trusted.
    """
    try:
        with open(cfg.dom0.boot_id, "rb") as handle:
            found = handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        found = ""
    if _is_uuid(found):
        return found
    from . import bootlog

    began = bootlog.btime(cfg.dom0.proc_stat)
    if began is not None:
        return "btime-%d" % began
    if not _OWN_ID:
        _OWN_ID.append("process-%d-%s" % (os.getpid(), os.urandom(8).hex()))
    return _OWN_ID[0]


_OWN_ID: "List[str]" = []  # this process's boot id, when dom0 gives none


def _is_uuid(text: str) -> bool:
    return (len(text) == 36 and all(text[i] == "-" for i in (8, 13, 18, 23))
            and all(c in "0123456789abcdefABCDEF" for c in text.replace("-", "")))


def now() -> float:
    """CLOCK_MONOTONIC seconds: shared by every process of this boot, never stepped."""
    return time.monotonic()


def bump(cfg: Config, counter: str) -> None:
    """Count one event: a byte appended to ``count.<counter>`` (OSError on failure)."""
    safe_directory(path(cfg, "count." + counter))
    fd = os.open(path(cfg, "count." + counter), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                 | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)


def counted(cfg: Config, counter: str) -> int:
    """How many events were counted (0 before the first)."""
    try:
        return os.stat(path(cfg, "count." + counter)).st_size
    except OSError:
        return 0
