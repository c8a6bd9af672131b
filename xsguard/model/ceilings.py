"""dom0's two ceilings, the Xen port limit and the Linux IRQ limit, and where each came from.

Pure: callers pass the text of the kernel's boot lines, ``/proc/cmdline`` and the Xen version;
of a kernel log's text or the ring buffer's records, which lines are this boot's (given the
boot time and when the log was written) and which give the ABI and NR_IRQS. A traditional
syslog stamp is read in the local time zone, as syslog wrote it.
"""

import re
import time
from typing import NamedTuple, Optional, Pattern, Tuple

XEN_PORTS = "xen_ports"
LINUX_IRQS = "linux_irqs"

PORT_LIMITS = {"fifo": 131071, "2-level": 4095, "2-level-32": 1023}
IRQ_SPARSE_EXTRA = 8196  # IRQ_BITMAP_BITS = NR_IRQS + 8196 with CONFIG_SPARSE_IRQ

# where a limit came from
CONFIGURED = "configured"  # a number in xsguard.conf
BOOT_LOG = "boot_log"  # a line the kernel printed at boot
INFERRED = "inferred"  # the command line and the Xen version
UNKNOWN = "unknown"

_ABI_LINE = re.compile(r"xen:events: Using (FIFO-based|2-level) ABI")
_NR_IRQS = re.compile(r"NR_IRQS: ?(\d+), nr_irqs: ?(\d+)")
_CONFIG_KEY = {XEN_PORTS: "port_limit", LINUX_IRQS: "irq_limit"}


class Ceiling(NamedTuple):
    """A limit, or None when unknown, and where it came from."""

    name: str  # XEN_PORTS or LINUX_IRQS
    limit: Optional[int]
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
    def warning(self) -> Optional[str]:
        """For an unknown limit, what goes unchecked and what the operator should set; else None."""
        if self.origin != UNKNOWN:
            return None
        if self.name == LINUX_IRQS:
            return ("Linux IRQ limit unknown: no NR_IRQS line of this boot in %s, so IRQs are not checked;"
                    " set [dom0] irq_limit to NR_IRQS + %d (dmesg | grep NR_IRQS)" % (self.where, IRQ_SPARSE_EXTRA))
        return ("Xen port limit unknown: no event-channel ABI line of this boot in %s and no Xen version,"
                " so ports are not checked; set [dom0] port_limit: 131071 for FIFO, 4095 for 2-level"
                " (dmesg | grep xen:events)" % self.where)


def abi_from_boot_lines(text: str) -> Optional[str]:
    """The ABI the kernel chose, or None if its line is not in ``text``."""
    found = _ABI_LINE.findall(text)
    if not found:
        return None
    return "fifo" if found[-1] == "FIFO-based" else "2-level"


def nr_irqs_from_boot_lines(text: str) -> Optional[int]:
    """NR_IRQS as the kernel printed it at boot, or None."""
    found = _NR_IRQS.findall(text)
    return int(found[-1][0]) if found else None


def abi_from_cmdline(cmdline: str, xen_version: Optional[str]) -> Optional[str]:
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
    configured: Optional[int],
    boot_lines: Optional[str],
    cmdline: Optional[str],
    xen_version: Optional[str],
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


def irq_ceiling(configured: Optional[int], boot_lines: Optional[str], where: str = "kernel log") -> Ceiling:
    """The Linux IRQ limit: the config's number, else NR_IRQS + 8196 from the boot lines."""
    if configured is not None:
        return Ceiling(LINUX_IRQS, configured, CONFIGURED)
    nr_irqs = nr_irqs_from_boot_lines(boot_lines or "")
    if nr_irqs is not None:
        return Ceiling(LINUX_IRQS, nr_irqs + IRQ_SPARSE_EXTRA, BOOT_LOG, "NR_IRQS %d" % nr_irqs, where)
    return Ceiling(LINUX_IRQS, None, UNKNOWN, "", where)


# This boot's lines in a kernel log (kern.log and its rotations) and in the ring buffer.

BOOT_CLOCK_SLACK = 60  # seconds a log's clock may lag the boot time (NTP's first step) and still be this boot's
# (a word the line holds, the line's pattern): the word is searched for first (fast), the pattern then
_BOOT_LINE = {XEN_PORTS: ("xen:events: Using ", _ABI_LINE), LINUX_IRQS: ("NR_IRQS:", _NR_IRQS)}
_BOOT_MARKER = ("Linux version ", re.compile(r"\bLinux version \d"))  # the first line a kernel prints
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TRADITIONAL = re.compile(r"(%s) +(\d{1,2}) (\d\d):(\d\d):(\d\d) " % "|".join(_MONTHS))
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)? ")
_STAMP_WIDTH = 40  # a stamp is the start of a line, no wider than this
_RING_RECORD = re.compile(r"^\d+,\d+,\d+,[^;]*;(.*)$", re.M)


class LogLines(NamedTuple):
    """What one kernel log holds of this boot."""

    text: str  # this boot's lines
    boot_started: bool  # this boot began in this log: older logs hold only earlier boots' lines


def syslog_time(line: str, written_at: float) -> Optional[float]:
    """The epoch time of a syslog line's stamp (``Nov 26 08:02:11`` in local time, or RFC 3339), or None.

    A traditional stamp has no year: it is the year the log was last written (``written_at``),
    or the one before for a month later than that.
    """
    match = _RFC3339.match(line)
    if match:
        import calendar  # not for every hook: only a search of the logs, once a boot, reads stamps

        fields = [int(g) for g in match.groups()[:6]]
        stamp = calendar.timegm((fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], 0, 0, 0))
        zone = match.group(7)
        if zone is None:  # no offset: local time, as the traditional stamp
            return time.mktime((fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], 0, 0, -1))
        if zone != "Z":
            sign = -1 if zone[0] == "+" else 1
            stamp += sign * (int(zone[1:3]) * 3600 + int(zone[-2:]) * 60)
        return float(stamp)
    match = _TRADITIONAL.match(line)
    if not match:
        return None
    written = time.localtime(written_at)
    month = _MONTHS.index(match.group(1)) + 1
    year = written.tm_year - 1 if month > written.tm_mon else written.tm_year
    day, hour, minute, second = (int(g) for g in match.groups()[1:])
    try:
        return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def this_boots_lines(text: str, boot_time: Optional[float], written_at: float) -> LogLines:
    """The lines of a kernel log that this boot wrote, oldest first.

    Lines before the last boot marker (the ``Linux version`` line a kernel prints first) are
    an earlier boot's; so is every line stamped before the boot time (``boot_time``, epoch
    seconds, None when unknown) less ``BOOT_CLOCK_SLACK``. ``written_at`` is when the log was
    last written (its year for stamps that have none).
    """
    marker = _last_line(text, *_BOOT_MARKER)
    start = 0 if marker is None else marker[0]
    started = marker is not None
    if boot_time is not None:
        limit = boot_time - BOOT_CLOCK_SLACK
        first = _first_stamp(text, start, written_at)
        if first is not None and first < limit:
            start, started = _first_line_at_or_after(text, start, limit, written_at), True
    return LogLines(text[start:], started)


def _first_stamp(text: str, start: int, written_at: float, lines: int = 8) -> Optional[float]:
    """The stamp of the first stamped line among the first ``lines`` from ``start``."""
    for line in text[start:start + 4096 * lines].split("\n", lines)[:lines]:
        stamp = syslog_time(line, written_at)
        if stamp is not None:
            return stamp
    return None


def _first_line_at_or_after(text: str, lo: int, limit: float, written_at: float) -> int:
    """Where the first line stamped at or after ``limit`` begins (``len(text)`` if none).

    ``lo`` begins a line stamped before ``limit``. A log is in time order, so this is a
    binary search; a line without a stamp counts as earlier (an earlier boot's line is never
    kept for want of a stamp).
    """
    hi = len(text)
    while True:
        after_lo = text.find("\n", lo) + 1 or len(text)
        if after_lo >= hi:
            return hi
        middle = text.rfind("\n", after_lo - 1, (after_lo + hi) // 2) + 1
        stamp = syslog_time(text[middle:middle + _STAMP_WIDTH], written_at)
        if stamp is not None and stamp >= limit:
            hi = middle
        else:
            lo = middle


def ring_messages(text: str) -> str:
    """The messages of ``/dev/kmsg`` records (``priority,seq,usec,flags;message``), one per line.

    The ring buffer holds only this boot's messages; continuation lines (`` KEY=value``) are
    left out.
    """
    return "\n".join(m.group(1) for m in _RING_RECORD.finditer(text))


def boot_line(text: str, name: str) -> Optional[str]:
    """The last line in ``text`` that gives ceiling ``name`` (the ABI, or NR_IRQS), or None."""
    found = _last_line(text, *_BOOT_LINE[name])
    return None if found is None else found[1]


def _last_line(text: str, word: str, pattern: Pattern[str]) -> Optional[Tuple[int, str]]:
    """The last line holding ``word`` and matching ``pattern``: where it begins, and the line."""
    end = len(text)
    while True:
        at = text.rfind(word, 0, end)
        if at < 0:
            return None
        begin = text.rfind("\n", 0, at) + 1
        stop = text.find("\n", at)
        line = text[begin:len(text) if stop < 0 else stop]
        if pattern.search(line):
            return begin, line
        end = at
