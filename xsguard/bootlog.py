"""This boot's kernel lines: from kern.log, its rotations, then the kernel's ring buffer.

The lines that give the ceilings (the event-channel ABI, ``NR_IRQS``) are printed once, at
boot. ``kern.log`` loses them at its first rotation, and a rotated file may begin with an
earlier boot's lines; the ring buffer (``/dev/kmsg``) keeps them until enough is printed
after them. The logs are read newest first, each keeping only this boot's lines
(``model.ceilings.this_boots_lines``), down to the one this boot began in; then the ring.

The search runs once a boot (its result is kept), so what only it needs is imported when it
runs, not by every hook.
"""

import errno
import os
import time
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

from .model import ceilings

RING_READ = 16384  # bytes per read of /dev/kmsg: more than its largest record
RING_MAX = 32 * 1024 * 1024  # the largest ring buffer Linux allows; a ring written faster stops here


class BootLine(NamedTuple):
    """One line the kernel printed at this boot, and where it was found."""

    line: str
    where: str  # the file and the kind of line: "/var/log/kern.log.2.gz, boot line"


def boot_time(proc_stat: str) -> Optional[float]:
    """When this boot began, in epoch seconds: ``btime`` in /proc/stat, else now less the
    ``uptime`` file beside it; None if neither is readable."""
    try:
        with open(proc_stat, "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(os.path.join(os.path.dirname(proc_stat), "uptime"), "rb") as handle:
            return time.time() - float(handle.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_log(path: str) -> Optional[Tuple[str, float]]:
    """A kernel log's text (gunzipped) and when it was last written, or None if unreadable."""
    import gzip
    import zlib

    try:
        written_at = os.stat(path).st_mtime
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace"), written_at
    except (OSError, EOFError, zlib.error):
        return None


def read_ring(path: str) -> Optional[str]:
    """The records in the kernel's ring buffer, read without blocking to its end, or None.

    ``/dev/kmsg`` gives one record per read and EAGAIN at the end; EPIPE says records were
    overwritten while reading, and reading goes on from the oldest one left.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    chunks = []
    size = 0
    try:
        while size < RING_MAX:
            try:
                data = os.read(fd, RING_READ)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                break  # EAGAIN: the end of the ring
            if not data:
                break
            chunks.append(data)
            size += len(data)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def searched(kernel_log: str, kernel_ring: str) -> str:
    """The sources searched, as a warning names them."""
    return "%s, its rotations or %s" % (kernel_log, kernel_ring)


def search(kernel_log: str, kernel_ring: str, proc_stat: str, names: Iterable[str]) -> Dict[str, BootLine]:
    """This boot's line for each ceiling in ``names`` (XEN_PORTS, LINUX_IRQS) that a source holds."""
    from .denials import log_files

    wanted = list(names)
    found: Dict[str, BootLine] = {}
    started = boot_time(proc_stat)
    for path in reversed(log_files(kernel_log)):
        if len(found) == len(wanted):
            return found
        log = read_log(path)
        if log is None:
            continue
        text, written_at = log
        if started is not None and written_at < started - ceilings.BOOT_CLOCK_SLACK:
            break  # last written before this boot: it and the older ones hold earlier boots' lines
        mine = ceilings.this_boots_lines(text, started, written_at)
        _pick(found, wanted, mine.text, "%s, boot line" % path)
        if mine.boot_started:
            break
    if len(found) < len(wanted):
        ring = read_ring(kernel_ring)
        if ring:
            _pick(found, wanted, ceilings.ring_messages(ring), "%s, ring buffer" % kernel_ring)
    return found


def _pick(found: Dict[str, BootLine], wanted: Iterable[str], text: str, where: str) -> None:
    for name in wanted:
        if name not in found:
            line = ceilings.boot_line(text, name)
            if line is not None:
                found[name] = BootLine(line, where)
