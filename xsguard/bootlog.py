"""This boot's kernel lines: from kern.log, its rotations, then the kernel's ring buffer.

The lines that give the ceilings (the event-channel ABI, ``NR_IRQS``) are printed once, at
boot, right after the boot marker (``Linux version``). ``kern.log`` loses them at its first
rotation, and a rotated file may begin with an earlier boot's lines; the ring buffer
(``/dev/kmsg``) keeps them until enough is printed after them.

The logs are read newest first, a chunk at a time (never whole: the memory a search takes
does not grow with a log's size), down to the newest one holding a boot marker: its last
marker is this boot's, unless the kernel's own times on the lines from it on say that another
boot wrote some of them; this boot's lines are the first of each kind after it, in that log.
Wall-clock stamps are not used: a clock stepped at boot makes them lie. Then the ring buffer,
of which only the kernel's own records count.

A search reads at most ``LOG_BYTES`` of the logs (gunzipped) and ``RING_MAX`` of the ring, in
at most its share of the deadline (``SEARCH_SECONDS``; ``PATIENT_SECONDS`` for a caller nobody
waits on); one cut short, or that could not read a log, says so (``Search.shortfall``;
``Search.timed`` when its time cut it). A hook searches once a boot (its result is kept,
whatever it was); a caller nobody waits on searches again, once, where a hook's search was cut
by its time. What only a search needs is imported when it runs, not by every hook.
"""

import errno
import os
import stat
import time

from . import bootcache
from .deadline import Deadline
from .model import ceilings
from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterable, Iterator, List, Optional

CHUNK = 1024 * 1024  # bytes of a log scanned at a time
LOG_BYTES = 256 * 1024 * 1024  # the most a search reads of the logs, gunzipped: a search reading more is cut short
RING_READ = 16384  # bytes per read of /dev/kmsg: more than its largest record
RING_MAX = 32 * 1024 * 1024  # the largest ring buffer Linux allows; a ring written faster stops here
SEARCH_SECONDS = 2.0  # the longest a search takes, and never more than half of what is left of the deadline
PATIENT_SECONDS = 20.0  # the same for a caller nobody waits on (xsguard-rrdd at start, xsguard status)
LOG_SHARE = 0.75  # of that time, what the logs may take; the ring buffer has the rest
BOOT_CLOCK_SLACK = 60  # seconds: a log last written earlier than this before the boot holds no line of it


class BootLine(NamedTuple):
    """One line the kernel printed at this boot, and where it was found."""

    line: str
    where: str  # the file and the kind of line: "/var/log/kern.log.2.gz, boot line"


class Search(NamedTuple):
    """What a search found, what it searched, and why it fell short ("" if it did not)."""

    lines: "Dict[str, BootLine]"
    sources: str  # as a warning names them: "/var/log/kern.log, its rotations or /dev/kmsg"
    shortfall: str = ""  # "search cut short after reading 256 MiB, in /var/log/kern.log.1"
    timed: bool = False  # cut short by its time (more time may find more), not only by bytes or a read

    @property
    def where(self) -> str:
        """Where a line not found was looked for, and why the search fell short."""
        return "%s (%s)" % (self.sources, self.shortfall) if self.shortfall else self.sources


class Shortfall(Exception):
    """A search stopped before its end: its byte bound, its time, or a log it could not read."""


class OutOfTime(Shortfall):
    """A search stopped at its time limit."""


class Budget:
    """How much a search may still read, and until when (``clock``'s seconds)."""

    def __init__(self, max_bytes: int, seconds: float, clock: "Callable[[], float]" = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.seconds = seconds
        self.until = clock() + seconds
        self.clock = clock
        self.read = 0

    def take(self, size: int, path: str) -> None:
        """Count ``size`` bytes read from ``path``; Shortfall once past the bound or the time."""
        self.read += size
        if self.read > self.max_bytes:
            raise Shortfall("search cut short after reading %d MiB, in %s" % (self.max_bytes >> 20, path))
        if self.clock() >= self.until:
            raise OutOfTime("search cut short at its %.1f s time limit, in %s" % (self.seconds, path))


def btime(proc_stat: str) -> "Optional[int]":
    """``btime`` in /proc/stat: when this boot began, epoch seconds (it moves if the clock is
    stepped); None if unreadable."""
    try:
        with open(proc_stat, "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def uptime(proc_stat: str) -> "Optional[float]":
    """Seconds since this boot began (the ``uptime`` file beside /proc/stat), or None."""
    try:
        with open(os.path.join(os.path.dirname(proc_stat), "uptime"), "rb") as handle:
            return float(handle.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def boot_time(proc_stat: str) -> "Optional[float]":
    """When this boot began, in epoch seconds: ``btime``, else now less the uptime; None if neither."""
    began = btime(proc_stat)
    if began is not None:
        return float(began)
    up = uptime(proc_stat)
    return None if up is None else time.time() - up


def seconds_for(deadline: "Optional[Deadline]", patient: bool = False) -> float:
    """The time a search may take: SEARCH_SECONDS (PATIENT_SECONDS for a caller nobody waits on),
    and at most half of what is left of ``deadline``."""
    bound = PATIENT_SECONDS if patient else SEARCH_SECONDS
    return bound if deadline is None else max(0.0, min(bound, deadline.remaining() / 2))


def search(kernel_log: str, kernel_ring: str, proc_stat: str, names: "Iterable[str]",
           seconds: float = SEARCH_SECONDS, clock: "Callable[[], float]" = time.monotonic) -> Search:
    """This boot's line for each ceiling in ``names`` (XEN_PORTS, LINUX_IRQS) that a source holds,
    found within ``seconds``."""
    wanted = list(names)
    shortfalls = []
    timed = False
    lines: Dict[str, BootLine] = {}
    try:
        lines = _search_logs(kernel_log, proc_stat, wanted, Budget(LOG_BYTES, seconds * LOG_SHARE, clock))
    except Shortfall as short:
        shortfalls.append(str(short))
        timed = isinstance(short, OutOfTime)
    except MemoryError:
        shortfalls.append("search failed: out of memory, in %s or its rotations" % kernel_log)
    missing = [name for name in wanted if name not in lines]
    if missing:
        budget = Budget(RING_MAX, seconds * (1 - LOG_SHARE), clock)
        try:
            scan = ceilings.BootScan(missing, ring=True)
            try:
                for chunk in _chunks(_ring_reads(kernel_ring), budget, kernel_ring):
                    scan.feed(chunk)
            finally:  # what the ring held up to a cut is this boot's all the same
                lines.update((name, BootLine(line.decode("utf-8", "replace"), "%s, ring buffer" % kernel_ring))
                             for name, line in scan.head.lines.items())
        except Shortfall as short:
            shortfalls.append(str(short))
            timed = timed or isinstance(short, OutOfTime)
        except MemoryError:
            shortfalls.append("search failed: out of memory, in %s" % kernel_ring)
    return Search(lines, bootcache.searched(kernel_log, kernel_ring), "; ".join(shortfalls), timed)


def _search_logs(kernel_log: str, proc_stat: str, wanted: "List[str]", budget: Budget) -> "Dict[str, BootLine]":
    """The boot lines after this boot's marker, in the newest log holding a marker (see the module)."""
    from .denials import log_files

    began = boot_time(proc_stat)
    up = uptime(proc_stat)
    newer: List[ceilings.Stretch] = []  # the logs read before (newer than) the one being read
    for path in reversed(log_files(kernel_log)):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # rotated away since it was listed
        except OSError as exc:
            raise Shortfall("search stopped: %s could not be read (%s)" % (path, exc.strerror))
        if not stat.S_ISREG(st.st_mode):
            continue
        if began is not None and st.st_mtime < began - BOOT_CLOCK_SLACK:
            break  # last written before this boot: it and the older ones hold earlier boots' lines
        scan = _scan_log(path, wanted, budget)
        if scan.tail is None:
            newer.insert(0, scan.head)
            continue
        stretches = [scan.tail] + newer  # oldest first
        if (all(s.one_boot(up) for s in stretches)
                and all(a.followed_by(b) for a, b in zip(stretches, stretches[1:]))):
            return {name: BootLine(line.decode("utf-8", "replace"), "%s, boot line" % path)
                    for name, line in scan.tail.lines.items()}
        return {}  # another boot began after that marker, and left no marker: none of these lines is this boot's
    return {}


def _scan_log(path: str, wanted: "List[str]", budget: Budget) -> ceilings.BootScan:
    """One log scanned to its end (gunzipped); Shortfall if it cannot be."""
    import gzip
    import zlib

    scan = ceilings.BootScan(wanted)
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as handle:
            for chunk in _chunks(_file_reads(handle.read), budget, path):
                scan.feed(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise Shortfall("search stopped: %s could not be read (%s)" % (path, getattr(exc, "strerror", None) or exc))
    return scan


def _file_reads(read: "Callable[[int], bytes]") -> "Iterator[bytes]":
    while True:
        data = read(CHUNK)
        if not data:
            return
        yield data


def _ring_reads(path: str) -> "Iterator[bytes]":
    """The records in the kernel's ring buffer, read without blocking to its end.

    ``/dev/kmsg`` gives one record per read and EAGAIN at the end; EPIPE says records were
    overwritten while reading, and reading goes on from the oldest one left.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        while True:
            try:
                data = os.read(fd, RING_READ)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                return  # EAGAIN: the end of the ring
            if not data:
                return
            yield data
    finally:
        os.close(fd)


def _chunks(reads: "Iterable[bytes]", budget: Budget, path: str) -> "Iterator[bytes]":
    """The data of ``reads`` as chunks of whole lines, about CHUNK bytes each, counted against
    ``budget``. A line longer than ceilings.MAX_LINE (never a boot line) is dropped unseen."""
    pending: List[bytes] = []
    size = 0
    skipping = False  # inside a line too long to be a boot line: dropped up to its end
    for data in reads:
        budget.take(len(data), path)
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            data, skipping = data[end + 1:], False
        pending.append(data)
        size += len(data)
        if size >= CHUNK:
            chunk = b"".join(pending)
            cut = chunk.rfind(b"\n") + 1
            if cut:
                yield chunk[:cut]
            rest = chunk[cut:]
            skipping = len(rest) > ceilings.MAX_LINE
            pending, size = ([rest], len(rest)) if rest and not skipping else ([], 0)
    if pending:
        yield b"".join(pending)
