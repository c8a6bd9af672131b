"""This boot's kernel lines, from kern.log, its rotations and the ring buffer; never an earlier boot's."""

import errno
import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any, List

import pytest

from tests.kernlog import boot_lines, stamped
from tests.pool import make_vm, wait_for
from xsguard import bootlog, config, ledger, probes, state
from xsguard.model import ceilings
from xsguard.model.ceilings import LINUX_IRQS, XEN_PORTS

NOW = int(time.time())
BOOT = NOW - 3 * 86400  # this boot: three days ago, 2-level ABI, XenServer's NR_IRQS
EARLIER = BOOT - 40 * 86400  # an earlier boot: FIFO and a much larger NR_IRQS
THIS_NR_IRQS = "NR_IRQS: 33024, nr_irqs: 2048, preallocated irqs: 16"
THIS_ABI = "xen:events: Using 2-level ABI"
EARLIER_NR_IRQS = "NR_IRQS: 524544, nr_irqs: 440, preallocated irqs: 16"
BOTH = [XEN_PORTS, LINUX_IRQS]


def later_lines(since, count=3, booted=BOOT):
    """Ordinary kernel lines of the boot begun at ``booted``, an hour apart from ``since``."""
    return [stamped(since + 3600 * (i + 1), "[%6d.000000] device vif%d.0 entered promiscuous mode"
                    % (since - booted + 3600 * (i + 1), i + 1)) for i in range(count)]


class Dom0Files:
    """A dom0's kernel logs, ring buffer and /proc/stat, under a temporary directory."""

    def __init__(self, root):
        self.root = root
        self.log = os.path.join(root, "kern.log")
        self.ring = os.path.join(root, "kmsg")
        self.stat = os.path.join(root, "stat")
        with open(self.stat, "w") as handle:
            handle.write("cpu  1 2 3 4\nbtime %d\nprocesses 4242\n" % BOOT)
        with open(os.path.join(root, "uptime"), "w") as handle:
            handle.write("%d.25 1000.00\n" % (NOW - BOOT))
        open(self.ring, "w").close()

    def write(self, name, lines, written_at):
        path = os.path.join(self.root, name)
        data = "".join(lines).encode()
        with (gzip.open if name.endswith(".gz") else open)(path, "wb") as handle:
            handle.write(data)
        os.utime(path, (written_at, written_at))
        return path

    def write_ring(self, records):
        with open(self.ring, "w") as handle:
            handle.write("".join(records))

    def search(self, **bounds):
        return bootlog.search(self.log, self.ring, self.stat, BOTH, **bounds).lines

    def ceilings(self, tmp_path, boot_id="5c1b0e2c-9d7e-4b5e-8f0e-3e2a1b0c9d8e", deadline=None, patient=False,
                 **values):
        with open(os.path.join(self.root, "boot_id"), "w") as handle:
            handle.write(boot_id + "\n")
        with open(os.path.join(self.root, "cmdline"), "w") as handle:
            handle.write("root=LABEL=root ro xen.fifo_events=0\n")
        cfg = config.defaults().with_values({
            "dom0.kernel_log": self.log, "dom0.kernel_ring": self.ring, "dom0.proc_stat": self.stat,
            "dom0.boot_id": os.path.join(self.root, "boot_id"), "dom0.cmdline": os.path.join(self.root, "cmdline"),
            "dom0.hypervisor": os.path.join(self.root, "nohypervisor"),
            "ledger.path": str(tmp_path / "state" / "ledger.json"),
        }).with_values(values)
        os.makedirs(str(tmp_path / "state"), exist_ok=True)
        return probes.read_ceilings(cfg, deadline, patient)


@pytest.fixture
def dom0(tmp_path):
    root = tmp_path / "dom0"
    root.mkdir()
    return Dom0Files(str(root))


def test_only_in_kern_log_1(dom0, tmp_path):
    """kern.log rotated once since boot: this boot's lines are read from kern.log.1 and said to be."""
    rotated = dom0.write("kern.log.1", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI) + later_lines(BOOT), BOOT + 86400)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    found = dom0.search()
    assert found[LINUX_IRQS].where == "%s, boot line" % rotated
    assert found[LINUX_IRQS].line.endswith(THIS_NR_IRQS) and found[XEN_PORTS].line.endswith(THIS_ABI)
    ports, irqs = dom0.ceilings(tmp_path)
    assert (irqs.limit, irqs.source) == (41220, "NR_IRQS 33024 + 8196 (%s, boot line)" % rotated)
    assert (ports.limit, ports.source) == (4095, "2-level ABI (%s, boot line)" % rotated)


def test_only_in_kern_log_2_gz(dom0, tmp_path):
    """Rotated twice and compressed: this boot's lines come from kern.log.2.gz."""
    oldest = dom0.write("kern.log.2.gz", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI) + later_lines(BOOT),
                        BOOT + 86400)
    dom0.write("kern.log.1", later_lines(BOOT + 86400), BOOT + 2 * 86400)
    dom0.write("kern.log", later_lines(BOOT + 2 * 86400), NOW)
    ports, irqs = dom0.ceilings(tmp_path)
    assert (irqs.limit, irqs.where) == (41220, "%s, boot line" % oldest)
    assert (ports.limit, ports.where) == (4095, "%s, boot line" % oldest)


def test_date_suffixed_rotation(dom0):
    """A logrotate ``dateext`` rotation (kern.log-20261124.gz) is searched as the numbered ones are."""
    dated = dom0.write("kern.log-20261124.gz", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 86400)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    assert dom0.search()[LINUX_IRQS].where == "%s, boot line" % dated


def test_only_in_the_ring_buffer(dom0, tmp_path):
    """No kern.log at all (a journald-only dom0): the ring buffer's records give both lines."""
    dom0.write_ring(["5,0,0,-;Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)\n",
                     " SUBSYSTEM=cpu\n",
                     "6,181,2742894,-;NR_IRQS: 524544, nr_irqs: 440, preallocated irqs: 16\n",
                     "6,182,2750855,-;xen:events: Using FIFO-based ABI\n"])
    found = dom0.search()
    assert found[LINUX_IRQS] == bootlog.BootLine(EARLIER_NR_IRQS, "%s, ring buffer" % dom0.ring)
    ports, irqs = dom0.ceilings(tmp_path)
    assert (irqs.limit, irqs.source) == (524544 + 8196, "NR_IRQS 524544 + 8196 (%s, ring buffer)" % dom0.ring)


def test_in_no_source(dom0, tmp_path):
    """No source has the line: the IRQ limit is unknown, and its warning names the key, the places
    searched and how to find the number."""
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    dom0.write_ring(["6,9000,900000000000,-;device vif9.0 entered promiscuous mode\n"])
    assert dom0.search() == {}
    ports, irqs = dom0.ceilings(tmp_path)
    assert (irqs.limit, irqs.source) == (None, "unknown: set [dom0] irq_limit")
    assert irqs.warning == (
        "Linux IRQ limit unknown: no NR_IRQS line of this boot in %s, its rotations or %s, so IRQs are not"
        " checked; set [dom0] irq_limit to NR_IRQS + 8196 (dmesg | grep NR_IRQS)" % (dom0.log, dom0.ring))
    assert ports.limit == 4095 and ports.warning is None  # inferred from xen.fifo_events=0


def test_a_search_in_vain_is_not_repeated_this_boot(dom0, tmp_path, monkeypatch):
    """Found nowhere: later readings in this boot do not search again (each decision would pay for
    it), and the limit stays unknown with its warning; another boot, or other sources, search again."""
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    searches = searches_made(monkeypatch)
    first = dom0.ceilings(tmp_path)[1]
    again = dom0.ceilings(tmp_path)[1]
    assert len(searches) == 1 and again == first and again.limit is None and again.warning == first.warning
    dom0.ceilings(tmp_path, boot_id="00000000-0000-4000-8000-000000000001")
    assert len(searches) == 2
    other = os.path.join(dom0.root, "kern.log.other")
    dom0.write("kern.log.other", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), NOW)
    irqs = dom0.ceilings(tmp_path, boot_id="00000000-0000-4000-8000-000000000001", **{"dom0.kernel_log": other})[1]
    assert len(searches) == 3 and irqs.limit == 41220


def test_earlier_boots_lines_first_in_a_rotated_file(dom0, tmp_path):
    """kern.log.1 begins with an earlier boot's lines (FIFO, NR_IRQS 524544) and this boot's were lost
    with its start: none of the earlier boot's lines is used (the stale-boot finding)."""
    dom0.write("kern.log.1", boot_lines(EARLIER, EARLIER_NR_IRQS, "xen:events: Using FIFO-based ABI")
               + later_lines(EARLIER, booted=EARLIER) + later_lines(BOOT), BOOT + 86400)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    assert dom0.search() == {}
    ports, irqs = dom0.ceilings(tmp_path)
    assert irqs.limit is None
    assert ports.limit == 4095 and "inferred" in ports.source


def test_earlier_boots_lines_then_this_boots_in_one_file(dom0):
    """A rotated file holding an earlier boot's lines, then this boot's: this boot's are used."""
    rotated = dom0.write("kern.log.1", boot_lines(EARLIER, EARLIER_NR_IRQS, "xen:events: Using FIFO-based ABI")
                         + later_lines(EARLIER, booted=EARLIER) + boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI),
                         BOOT + 86400)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    found = dom0.search()
    assert found[LINUX_IRQS] == bootlog.BootLine(stamped(BOOT + 20, "[    2.742894] " + THIS_NR_IRQS).rstrip(),
                                                 "%s, boot line" % rotated)
    assert found[XEN_PORTS].line.endswith(THIS_ABI)


def test_logs_older_than_the_boot_are_not_read(dom0):
    """A rotation last written before this boot holds only earlier boots' lines, stamped or not."""
    dom0.write("kern.log.1", ["[    2.742894] " + EARLIER_NR_IRQS + "\n"], EARLIER + 86400)
    dom0.write("kern.log", later_lines(BOOT), NOW)
    assert dom0.search() == {}


def test_the_boot_began_in_a_newer_log(dom0):
    """With no boot time to compare stamps with, the log this boot began in (its ``Linux version``
    line) is the last read: an older rotation's line is never taken, even for a line that lacks."""
    with open(dom0.stat, "w") as handle:
        handle.write("cpu  1 2 3 4\n")  # no btime, and no uptime beside it
    os.remove(os.path.join(dom0.root, "uptime"))
    dom0.write("kern.log.1", ["[    2.742894] " + EARLIER_NR_IRQS + "\n"], BOOT - 600)
    dom0.write("kern.log", [stamped(BOOT + 20, "[    0.000000] Linux version 4.19.0+1 (mockbuild@koji) #1 SMP"),
                            stamped(BOOT + 20, "[    2.750855] " + THIS_ABI)] + later_lines(BOOT), NOW)
    assert bootlog.boot_time(dom0.stat) is None
    assert set(dom0.search()) == {XEN_PORTS}


def test_boot_time_from_uptime_when_stat_has_no_btime(dom0):
    """Without btime, the boot time is now less /proc/uptime beside /proc/stat."""
    with open(dom0.stat, "w") as handle:
        handle.write("cpu  1 2 3 4\n")
    uptime = 3 * 86400.25
    with open(os.path.join(dom0.root, "uptime"), "w") as handle:
        handle.write("%.2f 1000.00\n" % uptime)
    before = time.time()
    found = bootlog.boot_time(dom0.stat)
    assert found is not None and before - uptime <= found <= time.time() - uptime


def test_a_later_nr_irqs_line_of_this_boot_is_not_its_limit(dom0, tmp_path):
    """This boot's kern.log holds its NR_IRQS line, then, later in the boot, another one (whoever
    printed it): the first after the boot marker is the limit, 41220, not 1,008,195."""
    dom0.write("kern.log", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI) + later_lines(BOOT)
               + [stamped(BOOT + 5 * 3600, "[ 18000.000000] NR_IRQS: 999999, nr_irqs: 2048, preallocated irqs: 16"),
                  stamped(BOOT + 5 * 3600, "[ 18000.100000] xen:events: Using FIFO-based ABI")], NOW)
    ports, irqs = dom0.ceilings(tmp_path)
    assert (irqs.limit, ports.limit) == (41220, 4095)


def test_a_non_kernel_record_in_the_ring_does_not_count(dom0, tmp_path):
    """/dev/kmsg records a process wrote (facility user, whatever it asked for) are not the kernel's:
    neither after the kernel's own NR_IRQS record, nor alone."""
    kernels = ["5,0,0,-;Linux version 4.19.0+1 (mockbuild@koji) #1 SMP\n",
               "6,181,2742894,-;%s\n" % THIS_NR_IRQS]
    forged = ["14,900,9000000000,-;NR_IRQS: 999999, nr_irqs: 2048, preallocated irqs: 16\n",
              "12,901,9000000001,-;xen:events: Using FIFO-based ABI\n"]
    dom0.write_ring(kernels + forged)
    assert dom0.ceilings(tmp_path)[1].limit == 41220
    dom0.write_ring(kernels[:1] + forged)
    assert dom0.search() == {}


def test_a_clock_stepped_at_boot_does_not_hide_this_boots_lines(dom0):
    """The clock was two hours behind when rsyslog wrote the boot lines, then NTP stepped it: the
    boot marker, not the stamps, says where this boot's lines begin."""
    behind = BOOT - 7200
    lines = boot_lines(behind, THIS_NR_IRQS, THIS_ABI) + later_lines(BOOT)
    dom0.write("kern.log", lines, NOW)
    found = dom0.search()
    assert found[LINUX_IRQS].line == lines[1].rstrip() and found[XEN_PORTS].line == lines[2].rstrip()


def test_an_earlier_boots_marker_is_rejected_by_the_kernels_own_times(dom0):
    """The newest boot marker is an earlier boot's when a line after it carries a kernel time later
    than this boot's uptime (the earlier boot ran for 30 days, this one for 3)."""
    dom0.write("kern.log", boot_lines(EARLIER, EARLIER_NR_IRQS, "xen:events: Using FIFO-based ABI")
               + [stamped(EARLIER + 30 * 86400, "[2592000.000000] device vif1.0 entered promiscuous mode")], NOW)
    assert dom0.search() == {}


def test_a_later_boot_in_a_newer_log_rejects_the_marker(dom0):
    """kern.log.1 holds the newest marker, and kern.log's kernel times start again from less than
    where kern.log.1's end (a boot that left no marker): no line of kern.log.1 is this boot's."""
    dom0.write("kern.log.1", boot_lines(EARLIER, EARLIER_NR_IRQS, "xen:events: Using FIFO-based ABI")
               + later_lines(EARLIER, 20, booted=EARLIER), BOOT + 60)
    dom0.write("kern.log", later_lines(BOOT), NOW)
    assert dom0.search() == {}


def test_the_boot_lines_are_found_in_one_reading_of_each_line(dom0, monkeypatch):
    """1500 lines that only mention ``NR_IRQS:`` (60 times each) before this boot's and 1500 after:
    each line is parsed once at most (the work is linear in the log's size), and the real line
    is found."""
    mention = "Nov 26 08:02:11 xs-a kernel: [    1.000000] " + "NR_IRQS: x " * 60 + "\n"
    lines = boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI)
    dom0.write("kern.log", lines[:1] + [mention] * 1500 + lines[1:] + [mention] * 1500, NOW)
    parsed = []
    message = ceilings.kernel_message

    def parsing(line, ring):
        parsed.append(len(line))
        return message(line, ring)

    monkeypatch.setattr(ceilings, "kernel_message", parsing)
    found = dom0.search()
    assert found[LINUX_IRQS].line == lines[1].rstrip()
    assert len(parsed) <= 1500 + 3 and sum(parsed) <= os.path.getsize(dom0.log)


def test_many_mentions_of_nr_irqs_cost_little_cpu(dom0):
    """16 MiB of 4 KiB lines that only mention ``NR_IRQS:``, before and after this boot's, are
    searched within 5 CPU seconds, the hook's deadline (a search that parsed a whole line at each
    mention took 12 s), in a process with that CPU limit."""
    mention = "Nov 26 08:02:11 xs-a kernel: [    1.000000] " + "NR_IRQS: x " * 360 + "\n"  # 4 KiB
    lines = boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI)
    mentions = [mention] * (8 * 1024 * 1024 // len(mention))
    dom0.write("kern.log", lines[:1] + mentions + lines[1:] + mentions, NOW)
    out = run_capped(dom0, "resource.RLIMIT_CPU", 5)
    assert out == {"linux_irqs": lines[1].rstrip(), "shortfall": ""}


def run_capped(dom0, limit, value):
    """``bootlog.search`` over dom0's files in a child process under a resource limit (``value``:
    seconds of CPU, or MiB of address space beyond what the child holds before searching)."""
    script = textwrap.dedent("""
        import json, resource, sys
        from xsguard import bootlog
        limit = %s
        value = %d
        if limit == resource.RLIMIT_AS:
            with open("/proc/self/status") as handle:
                size = next(int(l.split()[1]) for l in handle if l.startswith("VmSize:")) * 1024
            value = size + value * 1024 * 1024
        resource.setrlimit(limit, (value, value))
        found = bootlog.search(%r, %r, %r, ["linux_irqs"], seconds=600)  # the limit is the resource's
        print(json.dumps(dict({k: v.line for k, v in found.lines.items()}, shortfall=found.shortfall)))
    """) % (limit, value, dom0.log, dom0.ring, dom0.stat)
    proc = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout.decode())


def write_chatter(path, mib, written_at, opener=open):
    """``mib`` MiB of ordinary kernel lines of this boot, written a MiB at a time."""
    line = stamped(BOOT + 3600, "[  3600.000000] vif1.0: tx queue 0 stalled, resetting the ring of the backend")
    block = (line * (1024 * 1024 // len(line) + 1)).encode()[:1024 * 1024]
    block = block[:block.rfind(b"\n") + 1]
    with opener(path, "ab") as handle:
        for _ in range(mib):
            handle.write(block)
    os.utime(path, (written_at, written_at))


@pytest.mark.parametrize("name,mib", [("kern.log", 96), ("kern.log.1.gz", 128)])
def test_a_large_log_is_searched_in_little_memory(dom0, name, mib):
    """A 96 MiB kern.log, or a .gz that gunzips to 128 MiB, this boot's lines at its head, searched
    in a process allowed 48 MiB more than it holds before searching: found (reading the log whole
    needs twice its size)."""
    lines = boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI)
    path = dom0.write(name, lines, NOW)
    write_chatter(path, mib, NOW, gzip.open if name.endswith(".gz") else open)
    if name != "kern.log":
        dom0.write("kern.log", [stamped(NOW, "[259200.000000] device vif1.0 entered promiscuous mode")], NOW)
    assert run_capped(dom0, "resource.RLIMIT_AS", 48) == {"linux_irqs": lines[1].rstrip(), "shortfall": ""}


def test_a_gz_bomb_is_cut_at_the_byte_bound(dom0, monkeypatch):
    """A rotation that gunzips to more than the search may read (64 MiB, the bound set to 8): the
    search is cut short there and says so; the ring buffer is still searched."""
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    bomb = os.path.join(dom0.root, "kern.log.1.gz")
    write_chatter(bomb, 64, BOOT + 86400, gzip.open)
    assert os.path.getsize(bomb) < 1024 * 1024
    dom0.write_ring(["5,0,0,-;Linux version 4.19.0+1\n", "6,181,2742894,-;%s\n" % THIS_NR_IRQS])
    monkeypatch.setattr(bootlog, "LOG_BYTES", 8 * 1024 * 1024)
    found = bootlog.search(dom0.log, dom0.ring, dom0.stat, BOTH)
    assert found.shortfall == "search cut short after reading 8 MiB, in %s" % bomb
    assert found.lines == {LINUX_IRQS: bootlog.BootLine(THIS_NR_IRQS, "%s, ring buffer" % dom0.ring)}


def test_a_search_is_cut_at_its_time_limit(dom0):
    """A clock that passes a second at each reading: the logs' search stops at its share of the
    time, the ring buffer's at its own, and the search says why."""
    dom0.write("kern.log", ["x\n"] * 10, NOW)
    write_chatter(dom0.log, 4, NOW)
    dom0.write_ring(["6,%d,0,-;line %d\n" % (i, i) for i in range(20000)])
    ticks = iter(range(1000))
    found = bootlog.search(dom0.log, dom0.ring, dom0.stat, BOTH, seconds=4.0, clock=lambda: float(next(ticks)))
    assert found.lines == {}
    assert found.shortfall == ("search cut short at its 3.0 s time limit, in %s; search cut short at its 1.0 s"
                               " time limit, in %s" % (dom0.log, dom0.ring))


def test_a_search_cut_short_is_kept_for_the_boot_and_warned(dom0, tmp_path, monkeypatch):
    """A search cut short is not repeated in this boot (it would be cut again), and the unknown
    limit's warning, in status and the decision log, says why it is unknown."""
    dom0.write("kern.log.1", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 60)
    dom0.write("kern.log", [], NOW)
    write_chatter(dom0.log, 3, NOW)
    monkeypatch.setattr(bootlog, "LOG_BYTES", 2 * 1024 * 1024)
    searches = searches_made(monkeypatch)
    first = dom0.ceilings(tmp_path)[1]
    again = dom0.ceilings(tmp_path)[1]
    assert len(searches) == 1 and again == first and first.limit is None
    assert first.warning == (
        "Linux IRQ limit unknown: no NR_IRQS line of this boot in %s, its rotations or %s (search cut short after"
        " reading 2 MiB, in %s), so IRQs are not checked; set [dom0] irq_limit to NR_IRQS + 8196"
        " (dmesg | grep NR_IRQS)" % (dom0.log, dom0.ring, dom0.log))


def searches_made(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """bootlog.search as it is; the kernel log each search was given, in order."""
    searches: List[str] = []
    search = bootlog.search

    def recorded(*args: Any) -> bootlog.Search:
        searches.append(args[0])
        return search(*args)

    monkeypatch.setattr(bootlog, "search", recorded)
    return searches


def counted_searches(monkeypatch, clock):
    """bootlog.search on ``clock``; the seconds each search was given, in order."""
    given = []
    search = bootlog.search

    def counted(kernel_log, kernel_ring, proc_stat, names, seconds, **bounds):
        given.append(seconds)
        return search(kernel_log, kernel_ring, proc_stat, names, seconds, clock=clock)

    monkeypatch.setattr(bootlog, "search", counted)
    return given


def test_a_search_cut_by_time_is_redone_once_by_a_caller_nobody_waits_on(dom0, tmp_path, monkeypatch):
    """A hook's search with under 2 s of its deadline left (1 s to search, 0.75 s of it for the
    logs) on a clock that passes a second at each reading is cut short by its time: later hooks do
    not search again and the limit stays unknown; a patient caller (xsguard-rrdd at start, status)
    searches once with its own 20 s, finds NR_IRQS in kern.log.1, and it is kept for the boot."""
    from xsguard.deadline import Deadline

    dom0.write("kern.log.1", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 60)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    ticks = iter(range(1000))
    given = counted_searches(monkeypatch, lambda: float(next(ticks)))
    hook = dom0.ceilings(tmp_path, deadline=Deadline(2.0))[1]
    assert hook.limit is None and "time limit, in %s)" % dom0.log in hook.warning
    assert dom0.ceilings(tmp_path, deadline=Deadline(2.0))[1] == hook
    assert len(given) == 1 and given[0] <= 1.0
    found = dom0.ceilings(tmp_path, patient=True)[1]
    assert given[1:] == [bootlog.PATIENT_SECONDS]
    assert found.limit == 33024 + 8196 and found.warning is None
    assert dom0.ceilings(tmp_path, patient=True)[1].limit == 33024 + 8196
    assert dom0.ceilings(tmp_path, deadline=Deadline(2.0))[1].limit == 33024 + 8196
    assert len(given) == 2


def test_a_patient_search_cut_by_time_is_kept_and_not_redone(dom0, tmp_path, monkeypatch):
    """A patient caller's own search cut by its time (a clock passing 30 s at each reading) is kept
    for the boot like a hook's: no later caller, patient or not, searches again."""
    dom0.write("kern.log.1", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 60)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    ticks = iter(range(0, 30000, 30))
    given = counted_searches(monkeypatch, lambda: float(next(ticks)))
    first = dom0.ceilings(tmp_path, patient=True)[1]
    assert first.limit is None and "time limit" in first.warning
    assert dom0.ceilings(tmp_path, patient=True)[1] == first
    assert dom0.ceilings(tmp_path)[1] == first
    assert given == [bootlog.PATIENT_SECONDS]


def test_a_search_cut_by_the_byte_bound_is_not_redone_by_a_patient_caller(dom0, tmp_path, monkeypatch):
    """More time does not lift the byte bound: a hook's search cut by it stays cut for the boot,
    a patient caller does not search again."""
    dom0.write("kern.log.1", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 60)
    dom0.write("kern.log", [], NOW)
    write_chatter(dom0.log, 3, NOW)
    monkeypatch.setattr(bootlog, "LOG_BYTES", 2 * 1024 * 1024)
    given = counted_searches(monkeypatch, time.monotonic)
    first = dom0.ceilings(tmp_path)[1]
    assert first.limit is None and "after reading 2 MiB" in first.warning
    assert dom0.ceilings(tmp_path, patient=True)[1] == first
    assert len(given) == 1


def test_an_unreadable_log_stops_the_search_and_says_so(dom0):
    """A log that cannot be read may hold a later boot marker: the older ones are not trusted, and
    the search says which log it could not read."""
    dom0.write("kern.log.1", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 60)
    with open(dom0.log, "wb") as handle:
        handle.write(gzip.compress(b"not a gzip file's name")[:10])
    os.rename(dom0.log, dom0.log + ".0.gz")
    os.utime(dom0.log + ".0.gz", (NOW, NOW))
    found = bootlog.search(dom0.log, dom0.ring, dom0.stat, BOTH)
    assert found.lines == {}
    assert found.shortfall.startswith("search stopped: %s could not be read (" % (dom0.log + ".0.gz"))


def test_an_overlong_line_is_skipped_without_holding_it(dom0):
    """A 12 MiB line without a newline, between this boot's marker and its lines, is dropped as
    read: the lines after it are found."""
    lines = boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI)
    path = dom0.write("kern.log", lines[:1], NOW)
    with open(path, "ab") as handle:
        handle.write(b"NR_IRQS: 1, nr_irqs: 1 " * (12 * 1024 * 1024 // 23) + b"\n")
        handle.write("".join(lines[1:]).encode())
    os.utime(path, (NOW, NOW))
    assert dom0.search()[LINUX_IRQS].line == lines[1].rstrip()


def test_ring_read_goes_on_past_overwritten_records_and_stops_at_its_end(dom0, monkeypatch):
    """EPIPE (records overwritten while reading) is read past; EAGAIN ends the read without blocking."""
    replies = [b"5,0,0,-;Linux version 6.1.0\n", OSError(errno.EPIPE, "Broken pipe"),
               b"6,181,2742894,-;" + EARLIER_NR_IRQS.encode() + b"\n", OSError(errno.EAGAIN, "again"),
               b"6,999,9,-;xen:events: Using FIFO-based ABI\n"]

    def read(fd, size):
        reply = replies.pop(0)
        if isinstance(reply, OSError):
            raise reply
        return reply

    monkeypatch.setattr(bootlog.os, "read", read)
    assert dom0.search() == {LINUX_IRQS: bootlog.BootLine(EARLIER_NR_IRQS, "%s, ring buffer" % dom0.ring)}
    assert replies == [b"6,999,9,-;xen:events: Using FIFO-based ABI\n"]


def test_the_real_kmsg_is_read_to_its_end_without_blocking():
    """This machine's /dev/kmsg: the search returns, and reads every record up to the last."""
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here")
    found = bootlog.search("/nonexistent/kern.log", "/dev/kmsg", "/proc/stat", BOTH)
    assert found.shortfall == ""
    if LINUX_IRQS in found.lines:
        assert ceilings.irq_ceiling(None, found.lines[LINUX_IRQS].line).origin == ceilings.BOOT_LOG


def boot_id_config(tmp_path, boot_id, btime):
    """A config whose boot id file holds ``boot_id`` (None: no such file) and /proc/stat's btime
    is ``btime`` (None: none)."""
    (tmp_path / "proc").mkdir(exist_ok=True)
    if boot_id is not None:
        (tmp_path / "proc" / "boot_id").write_text(boot_id)
    (tmp_path / "proc" / "stat").write_text("cpu  1 2 3 4\n" + ("btime %d\n" % btime if btime else ""))
    return config.defaults().with_values({"dom0.boot_id": str(tmp_path / "proc" / "boot_id"),
                                          "dom0.proc_stat": str(tmp_path / "proc" / "stat"),
                                          "ledger.path": str(tmp_path / "state" / "ledger.json")})


@pytest.mark.parametrize("unusable", [None, "", "\n", "not-a-uuid\n"])
def test_an_unusable_boot_id_does_not_carry_the_ledger_across_a_reboot(tmp_path, unusable):
    """No usable boot id (missing, empty, not a UUID): the id is derived from the boot time, so a
    ledger written in one boot is not trusted in the next (it is rebuilt from live state)."""
    cfg = boot_id_config(tmp_path, unusable, BOOT)
    before = state.boot_id(cfg)
    path = cfg.ledger.path
    ledger.save(path, before, {"u": ledger.Entry("u", "web-01", 12, 1.0, None, "checked", 0, None)})
    assert before == "btime-%d" % BOOT and ledger.load(path, state.boot_id(cfg)).entries is not None
    cfg = boot_id_config(tmp_path, unusable, BOOT + 86400)  # rebooted a day later
    assert ledger.load(path, state.boot_id(cfg)).entries is None


def test_without_boot_id_or_boot_time_nothing_kept_is_trusted(tmp_path):
    """Neither a boot id nor a boot time: each process has an id of its own (the same at each call),
    so nothing a process kept is trusted by the next."""
    cfg = boot_id_config(tmp_path, None, None)
    script = ("from xsguard import config, state; cfg = config.defaults().with_values({'dom0.boot_id': %r,"
              " 'dom0.proc_stat': %r}); print(state.boot_id(cfg), state.boot_id(cfg))"
              % (cfg.dom0.boot_id, cfg.dom0.proc_stat))
    ids = [subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, check=True).stdout.split()
           for _ in range(2)]
    assert ids[0][0] == ids[0][1] and ids[1][0] == ids[1][1] and ids[0][0] != ids[1][0]
    assert all(i[0].startswith(b"process-") for i in ids)


def test_with_an_unreadable_boot_id_the_ceilings_are_kept_per_boot(dom0, tmp_path, monkeypatch):
    """No boot id: the ceilings read at boot are kept for that boot all the same (one search), and
    not trusted after a reboot (searched again, the new boot's line used)."""
    dom0.write("kern.log", boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), NOW)
    searches = searches_made(monkeypatch)
    assert [dom0.ceilings(tmp_path, boot_id="")[1].limit for _ in range(3)] == [41220] * 3
    assert len(searches) == 1
    with open(dom0.stat, "w") as handle:
        handle.write("btime %d\n" % (BOOT + 3600))  # rebooted
    dom0.write("kern.log", boot_lines(BOOT + 3600, EARLIER_NR_IRQS, THIS_ABI), NOW)
    assert dom0.ceilings(tmp_path, boot_id="")[1].limit == 524544 + 8196 and len(searches) == 2

def run_xsguard(api, host, *args):
    conf = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
    proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", conf] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def decision_log(api, host, event, count):
    """The decision log's ``event`` records once there are ``count`` (a detached child writes the hook's)."""
    path = os.path.join(api.sim.get_host_root(host), "var", "log", "xsguard", "decisions.log")

    def records():
        try:
            with open(path) as handle:
                found = [r for r in (json.loads(line) for line in handle) if r["event"] == event]
        except FileNotFoundError:
            return None
        return found if len(found) >= count else None

    return wait_for(records)


def sim_boot_time(root):
    with open(os.path.join(root, "proc", "stat")) as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("btime "))


def test_hook_and_status_read_the_boot_line_from_a_compressed_rotation(api):
    """On a simulated host whose boot lines are only in kern.log.2.gz (the ring buffer wrapped),
    status names that file, and the hook's decision log checks carry status's limits and sources."""
    host = api.sim.add_host("xs-a", {"vcpus": "4", "abi": "2-level"})
    root = api.sim.get_host_root(host)
    logs = os.path.join(root, "var", "log")
    booted = sim_boot_time(root)
    with open(os.path.join(logs, "kern.log"), "rb") as handle:
        boot_text = handle.read()
    assert b"NR_IRQS: 33024" in boot_text  # the simulator's own figure, rotated away below
    with gzip.open(os.path.join(logs, "kern.log.2.gz"), "wb") as handle:
        handle.write(boot_text + stamped(booted + 100, "[  100.000000] device vif0.0 entered promiscuous").encode())
    with open(os.path.join(logs, "kern.log.1"), "w") as handle:
        handle.write(stamped(booted + 300, "[  300.000000] device vif1.0 entered promiscuous mode"))
    with open(os.path.join(logs, "kern.log"), "w") as handle:
        handle.write(stamped(booted + 500, "[  500.000000] device vif2.0 entered promiscuous mode"))
    for name, at in (("kern.log.2.gz", booted + 200), ("kern.log.1", booted + 400)):
        os.utime(os.path.join(logs, name), (at, at))
    open(os.path.join(root, "dev", "kmsg"), "w").close()
    first = json.loads(run_xsguard(api, host, "status", "--json"))
    rotated = os.path.join(logs, "kern.log.2.gz")
    assert (first["irq_limit"], first["irq_limit_source"]) == (41220, "NR_IRQS 33024 + 8196 (%s, boot line)" % rotated)
    assert (first["port_limit"], first["port_limit_source"]) == (4095, "2-level ABI (%s, boot line)" % rotated)
    assert first["warnings"] == []
    api.VM.start(make_vm(api, "web-01", affinity=host), False, False)
    checks = {c["ceiling"]: c for c in decision_log(api, host, "start_admitted", 1)[0]["checks"]}
    now = json.loads(run_xsguard(api, host, "status", "--json"))
    irqs, ports = checks["linux_irqs"], checks["xen_ports"]
    assert (irqs["limit"], irqs["source"]) == (now["irq_limit"], now["irq_limit_source"])
    assert (ports["limit"], ports["source"]) == (now["port_limit"], now["port_limit_source"])
    assert now["irq_limit_source"] == ("NR_IRQS 33024 + 8196 (%s, boot line, kept since this boot's first reading)"
                                       % rotated)


def test_unknown_irq_limit_is_warned_and_logged_once_per_boot(api):
    """No source has NR_IRQS: status warns (JSON and table), the decision log says ``ceiling_unknown``
    once, from the hook, however many decisions and status runs follow, and again after a reboot."""
    host = api.sim.add_host("xs-a", {"vcpus": "4", "abi": "2-level"})
    root = api.sim.get_host_root(host)
    open(os.path.join(root, "var", "log", "kern.log"), "w").close()
    open(os.path.join(root, "dev", "kmsg"), "w").close()
    api.VM.start(make_vm(api, "web-01", affinity=host), False, False)
    logged = decision_log(api, host, "ceiling_unknown", 1)
    api.VM.start(make_vm(api, "web-02", affinity=host), False, False)
    decision_log(api, host, "start_admitted", 2)
    s = json.loads(run_xsguard(api, host, "status", "--json"))
    table = run_xsguard(api, host, "status")
    warning = ("Linux IRQ limit unknown: no NR_IRQS line of this boot in %s, its rotations or %s, so IRQs are"
               " not checked; set [dom0] irq_limit to NR_IRQS + 8196 (dmesg | grep NR_IRQS)"
               % (os.path.join(root, "var", "log", "kern.log"), os.path.join(root, "dev", "kmsg")))
    assert (s["irq_limit"], s["irq_limit_source"], s["warnings"]) == (None, "unknown: set [dom0] irq_limit", [warning])
    assert "WARNING: " + warning in table.splitlines()
    assert [(r["ceiling"], r["host_name"], r["warning"]) for r in logged] == [("linux_irqs", "xs-a", warning)]
    assert len(decision_log(api, host, "ceiling_unknown", 1)) == 1
    with open(os.path.join(root, "proc", "sys", "kernel", "random", "boot_id"), "w") as handle:
        handle.write("00000000-0000-4000-8000-000000000001\n")  # dom0 rebooted
    run_xsguard(api, host, "status", "--json")
    again = decision_log(api, host, "ceiling_unknown", 2)
    assert len(again) == 2 and again[1]["host_uuid"] == s["host_uuid"]


def test_once_per_boot_marker(tmp_path):
    """The marker answers yes once per boot id, and yes when it cannot be kept (loud rather than silent)."""
    from xsguard.bootcache import first_this_boot

    marker = str(tmp_path / "ceiling_unknown")
    assert [first_this_boot(marker, "boot-a") for _ in range(3)] == [True, False, False]
    assert [first_this_boot(marker, "boot-b") for _ in range(2)] == [True, False]
    assert first_this_boot(str(tmp_path / "no-such-dir" / "ceiling_unknown"), "boot-b") is True
