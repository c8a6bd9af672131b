"""dom0's two ceilings, the Xen port limit and the Linux IRQ limit, and where each came from.

Pure: callers pass the kernel's boot line, ``/proc/cmdline`` and the Xen version; and, a chunk
at a time, a kernel log's lines or the ring buffer's records (``BootScan``): which are boot
markers, which give the ABI and NR_IRQS, and the kernel's own times the lines carry.
"""

import re

from ..namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, Iterable, Iterator, List, Optional, Tuple

XEN_PORTS = "xen_ports"
LINUX_IRQS = "linux_irqs"

PORT_LIMITS = {"fifo": 131071, "2-level": 4095, "2-level-32": 1023}
IRQ_SPARSE_EXTRA = 8196  # IRQ_BITMAP_BITS = NR_IRQS + 8196 with CONFIG_SPARSE_IRQ

# where a limit came from
CONFIGURED = "configured"  # a number in xsguard.conf
BOOT_LOG = "boot_log"  # a line the kernel printed at boot
INFERRED = "inferred"  # the command line and the Xen version
UNKNOWN = "unknown"

# The patterns here are compiled on their first use (``re`` keeps them): only the first decision of
# a boot reads kernel lines; every later one finds the ceilings kept (``bootcache``).
_ABI_LINE = r"xen:events: Using (FIFO-based|2-level) ABI"
_NR_IRQS = r"NR_IRQS: ?(\d+), nr_irqs: ?(\d+)"
_CONFIG_KEY = {XEN_PORTS: "port_limit", LINUX_IRQS: "irq_limit"}


class Ceiling(NamedTuple):
    """A limit, or None when unknown, and where it came from."""

    name: str  # XEN_PORTS or LINUX_IRQS
    limit: "Optional[int]"
    origin: str  # CONFIGURED, BOOT_LOG, INFERRED or UNKNOWN
    basis: str = ""  # the ABI ("fifo", "2-level") or "NR_IRQS <n>"
    where: str = ""  # the file it was read from, and how; for an unknown one, where it was looked for

    @property
    def source(self) -> str:
        """One sentence: where the limit came from (what ``status`` shows)."""
        key = "[dom0] %s" % _CONFIG_KEY[self.name]
        if self.origin == CONFIGURED:
            return "configured (%s)" % key
        if self.origin == UNKNOWN:
            return "unknown: set %s" % key
        what = "%s ABI" % self.basis if self.name == XEN_PORTS else "%s + %d" % (self.basis, IRQ_SPARSE_EXTRA)
        return "%s (%s)" % (what, self.where)

    @property
    def warning(self) -> "Optional[str]":
        """For an unknown limit, what goes unchecked and what the operator should set; else None."""
        if self.origin != UNKNOWN:
            return None
        if self.name == LINUX_IRQS:
            return ("Linux IRQ limit unknown: no NR_IRQS line of this boot in %s, so IRQs are not checked;"
                    " set [dom0] irq_limit to NR_IRQS + %d (dmesg | grep NR_IRQS)" % (self.where, IRQ_SPARSE_EXTRA))
        return ("Xen port limit unknown: no event-channel ABI line of this boot in %s and no Xen version,"
                " so ports are not checked; set [dom0] port_limit: 131071 for FIFO, 4095 for 2-level"
                " (dmesg | grep xen:events)" % self.where)


def abi_from_boot_lines(text: str) -> "Optional[str]":
    """The ABI the kernel chose, from its first line in ``text`` (this boot's lines), or None."""
    found = re.search(_ABI_LINE, text)
    if not found:
        return None
    return "fifo" if found.group(1) == "FIFO-based" else "2-level"


def nr_irqs_from_boot_lines(text: str) -> "Optional[int]":
    """NR_IRQS as the kernel printed it at boot (its first line in ``text``), or None."""
    found = re.search(_NR_IRQS, text)
    return int(found.group(1)) if found else None


def abi_from_cmdline(cmdline: str, xen_version: "Optional[str]") -> "Optional[str]":
    """Infer the ABI: ``xen.fifo_events=0`` forces 2-level; FIFO exists from Xen 4.4 on."""
    if fifo_disabled(cmdline):
        return "2-level"
    if xen_version is None:
        return None
    match = re.match(r"(\d+)\.(\d+)", xen_version)
    if not match:
        return None
    return "fifo" if (int(match.group(1)), int(match.group(2))) >= (4, 4) else "2-level"


def fifo_disabled(cmdline: str) -> bool:
    """``xen.fifo_events=0`` (or n, no, off, false) on dom0's kernel command line."""
    for word in cmdline.split():
        if word.startswith("xen.fifo_events="):
            return word.split("=", 1)[1].lower() in ("0", "n", "no", "off", "false")
    return False


def port_ceiling(
    configured: "Optional[int]",
    boot_lines: "Optional[str]",
    cmdline: "Optional[str]",
    xen_version: "Optional[str]",
    where: str = "kernel log",
) -> Ceiling:
    """The Xen port limit: the config's number, else the ABI from the boot lines, else inferred.

    A boot line that contradicts the command line (FIFO logged, ``xen.fifo_events=0`` set) is
    another boot's: it is not trusted.
    """
    if configured is not None:
        return Ceiling(XEN_PORTS, configured, CONFIGURED)
    abi = abi_from_boot_lines(boot_lines or "")
    if abi and not (abi == "fifo" and fifo_disabled(cmdline or "")):
        return Ceiling(XEN_PORTS, PORT_LIMITS[abi], BOOT_LOG, abi, where)
    abi = abi_from_cmdline(cmdline or "", xen_version)
    if abi:
        return Ceiling(XEN_PORTS, PORT_LIMITS[abi], INFERRED, abi,
                       "inferred from the kernel command line and Xen %s" % xen_version)
    return Ceiling(XEN_PORTS, None, UNKNOWN, "", where)


def irq_ceiling(configured: "Optional[int]", boot_lines: "Optional[str]", where: str = "kernel log") -> Ceiling:
    """The Linux IRQ limit: the config's number, else NR_IRQS + 8196 from the boot lines."""
    if configured is not None:
        return Ceiling(LINUX_IRQS, configured, CONFIGURED)
    nr_irqs = nr_irqs_from_boot_lines(boot_lines or "")
    if nr_irqs is not None:
        return Ceiling(LINUX_IRQS, nr_irqs + IRQ_SPARSE_EXTRA, BOOT_LOG, "NR_IRQS %d" % nr_irqs, where)
    return Ceiling(LINUX_IRQS, None, UNKNOWN, "", where)


# This boot's lines in a kernel log (kern.log and its rotations) and in the ring buffer.
#
# A kernel log is scanned a chunk of whole lines at a time, once: a line is looked at only if it
# holds one of the words below, and then once (the search goes on after its end), so the work is
# linear in the log's size whatever its lines hold. The boot lines a boot printed are the first
# of each kind after its boot marker (the ``Linux version`` line a kernel prints first): a later
# line of the same kind, whoever printed it, never counts.

MAX_LINE = 4096  # bytes: a kernel record is at most 1 KiB; a longer line is no boot line
KERNEL_FACILITY = 0  # a /dev/kmsg record's facility is its priority >> 3; userspace can never write 0
TIME_SLACK = 1  # seconds the kernel's times of successive lines may go back (records of several CPUs)
UPTIME_SLACK = (1.01, 60)  # the kernel's times run on their own clock: they may pass the uptime by 1% and 60 s
MARKER = "marker"
_HEADER_WIDTH = 160  # a syslog line's stamp, host and ``kernel: `` come within its first bytes
# the word a line holds (found fast), then the pattern its message must begin with
_WORDS = {
    MARKER: (b"Linux version ", rb"Linux version \d"),
    XEN_PORTS: (b"xen:events: Using ", rb"xen:events: Using (?:FIFO-based|2-level) ABI"),
    LINUX_IRQS: (b"NR_IRQS:", rb"NR_IRQS: ?\d+, nr_irqs: ?\d+"),
}
_PRINTK = rb"\[ *\d+\.\d+\] ?"  # the kernel's time, seconds since boot, before a message
_LOG_PRINTK = rb"kernel: \[ *(\d+)\.\d+\]"  # that time in a syslog line (whole seconds)
_RING_RECORD = rb"(\d+),\d+,\d+,[^;]*;"  # /dev/kmsg: priority,seq,usec,flags;message


def kernel_message(line: bytes, ring: bool) -> "Optional[bytes]":
    """The kernel's message in one line, or None if the line is not the kernel's.

    ``ring``: a /dev/kmsg record, the kernel's only if its facility is (a process writing to
    /dev/kmsg gets another). Else a kernel log's line: what follows ``kernel: `` in its header
    (the whole line if it has none), less the kernel's time.
    """
    if ring:
        record = re.match(_RING_RECORD, line)
        if record is None or int(record.group(1)) >> 3 != KERNEL_FACILITY:
            return None
        return line[record.end():]
    at = line.find(b"kernel: ", 0, _HEADER_WIDTH)
    start = 0 if at < 0 else at + len(b"kernel: ")
    printk = re.compile(_PRINTK).match(line, start)
    return line[printk.end() if printk else start:]


class Stretch:
    """The lines from one boot marker on (or from the start, before any): the first line of each
    kind among them (a ring record's message), and whether the kernel's times they carry go
    back, or beyond ``uptime``."""

    def __init__(self, marker: "Optional[bytes]") -> None:
        self.marker = marker
        self.lines: Dict[str, bytes] = {}
        self.first_time: Optional[int] = None
        self.last_time: Optional[int] = None
        self.latest = 0
        self.went_back = False

    def add_times(self, times: "List[int]") -> None:
        if not times:
            return
        if self.last_time is not None:
            times.insert(0, self.last_time)
        elif self.first_time is None:
            self.first_time = times[0]
        if not self.went_back and times != sorted(times):  # sorted: C's speed for a log in order
            self.went_back = any(later < earlier - TIME_SLACK for earlier, later in zip(times, times[1:]))
        self.latest = max(self.latest, max(times))
        self.last_time = times[-1]

    def one_boot(self, uptime: "Optional[float]") -> bool:
        """True unless the kernel's times say another boot wrote some of these lines."""
        return not self.went_back and (uptime is None or self.latest <= uptime * UPTIME_SLACK[0] + UPTIME_SLACK[1])

    def followed_by(self, newer: "Stretch") -> bool:
        """True if ``newer``'s times carry on from this stretch's (the same boot)."""
        return (self.last_time is None or newer.first_time is None
                or newer.first_time >= self.last_time - TIME_SLACK)


class BootScan:
    """One kernel log, or the ring buffer, fed a chunk of whole lines at a time.

    A log's ``head`` is what comes before its first boot marker, its ``tail`` what comes from
    its last one on (None without one). The ring buffer holds only this boot's records: all of
    them are its ``head``, and only the kernel's own records count.
    """

    def __init__(self, names: "Iterable[str]", ring: bool = False) -> None:
        self.names = list(names)
        self.ring = ring
        self.head = Stretch(None)
        self.tail: Optional[Stretch] = None

    def feed(self, chunk: bytes) -> None:
        """Scan ``chunk``: whole lines (a line longer than MAX_LINE is never a boot line)."""
        done = 0
        if not self.ring:
            for start, end, line, _ in self._lines(chunk, 0, len(chunk), MARKER):
                self._scan(chunk, done, start)
                self.tail = Stretch(line)
                done = end
        self._scan(chunk, done, len(chunk))

    def _scan(self, chunk: bytes, lo: int, hi: int) -> None:
        if lo >= hi:
            return
        stretch = self.tail or self.head
        if not self.ring:
            stretch.add_times(list(map(int, re.compile(_LOG_PRINTK).findall(chunk, lo, hi))))
            if self.tail is None:
                return  # a log's lines before its first marker are no boot's boot lines
        for name in self.names:
            if name not in stretch.lines:
                for _, _, line, message in self._lines(chunk, lo, hi, name):
                    stretch.lines[name] = message if self.ring else line
                    break

    def _lines(self, chunk: bytes, lo: int, hi: int, kind: str) -> "Iterator[Tuple[int, int, bytes, bytes]]":
        """The lines of ``chunk[lo:hi]`` (``lo`` begins a line) whose message is a line of ``kind``:
        where each begins, where it ends, the line and its message."""
        word, pattern = _WORDS[kind]
        at = chunk.find(word, lo, hi)
        while at >= 0:
            start = chunk.rfind(b"\n", lo, at) + 1 or lo
            end = chunk.find(b"\n", at, hi)
            end = hi if end < 0 else end + 1
            line = chunk[start:end].rstrip(b"\r\n")
            if len(line) <= MAX_LINE:
                message = kernel_message(line, self.ring)
                if message is not None and re.match(pattern, message):
                    yield start, end, line, message
            at = chunk.find(word, end, hi)

