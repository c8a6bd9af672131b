"""This boot's kernel lines, from kern.log, its rotations and the ring buffer; never an earlier boot's."""

import errno
import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from tests.pool import make_vm, wait_for
from xsguard import bootlog, config, probes
from xsguard.model.ceilings import LINUX_IRQS, XEN_PORTS, ring_messages, syslog_time, this_boots_lines

NOW = int(time.time())
BOOT = NOW - 3 * 86400  # this boot: three days ago, 2-level ABI, XenServer's NR_IRQS
EARLIER = BOOT - 40 * 86400  # an earlier boot: FIFO and a much larger NR_IRQS
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
THIS_NR_IRQS = "NR_IRQS: 33024, nr_irqs: 2048, preallocated irqs: 16"
THIS_ABI = "xen:events: Using 2-level ABI"
EARLIER_NR_IRQS = "NR_IRQS: 524544, nr_irqs: 440, preallocated irqs: 16"
BOTH = [XEN_PORTS, LINUX_IRQS]


def stamped(at, message):
    """A kern.log line as rsyslog writes it: local time without a year, host, ``kernel:``."""
    t = time.localtime(at)
    return "%s %2d %02d:%02d:%02d xs-a kernel: %s\n" % (MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min,
                                                      t.tm_sec, message)


def boot_lines(booted, nr_irqs, abi):
    """The lines a boot leaves in kern.log when rsyslog starts, 20 s in."""
    return [stamped(booted + 20, "[    0.000000] Linux version 4.19.0+1 (mockbuild@koji) #1 SMP"),
            stamped(booted + 20, "[    2.742894] " + nr_irqs),
            stamped(booted + 20, "[    2.750855] " + abi)]


def later_lines(since, count=3):
    """Ordinary kernel lines of a running boot, an hour apart from ``since``."""
    return [stamped(since + 3600 * (i + 1), "[%6d.000000] device vif%d.0 entered promiscuous mode"
                    % (since - BOOT + 3600 * (i + 1), i + 1)) for i in range(count)]


class Dom0Files:
    """A dom0's kernel logs, ring buffer and /proc/stat, under a temporary directory."""

    def __init__(self, root):
        self.root = root
        self.log = os.path.join(root, "kern.log")
        self.ring = os.path.join(root, "kmsg")
        self.stat = os.path.join(root, "stat")
        with open(self.stat, "w") as handle:
            handle.write("cpu  1 2 3 4\nbtime %d\nprocesses 4242\n" % BOOT)
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

    def search(self):
        return bootlog.search(self.log, self.ring, self.stat, BOTH)

    def ceilings(self, tmp_path, boot_id="5c1b0e2c-9d7e-4b5e-8f0e-3e2a1b0c9d8e", **values):
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
        return probes.read_ceilings(cfg)


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
    searches = []
    search = bootlog.search
    monkeypatch.setattr(bootlog, "search", lambda *args: searches.append(args[0]) or search(*args))
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
               + later_lines(EARLIER) + later_lines(BOOT), BOOT + 86400)
    dom0.write("kern.log", later_lines(BOOT + 86400), NOW)
    assert dom0.search() == {}
    ports, irqs = dom0.ceilings(tmp_path)
    assert irqs.limit is None
    assert ports.limit == 4095 and "inferred" in ports.source


def test_earlier_boots_lines_then_this_boots_in_one_file(dom0):
    """A rotated file holding an earlier boot's lines, then this boot's: this boot's are used."""
    rotated = dom0.write("kern.log.1", boot_lines(EARLIER, EARLIER_NR_IRQS, "xen:events: Using FIFO-based ABI")
                         + later_lines(EARLIER) + boot_lines(BOOT, THIS_NR_IRQS, THIS_ABI), BOOT + 86400)
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
    assert before - uptime <= found <= time.time() - uptime


def test_syslog_stamps():
    """Traditional stamps are local time in the year the log was written (the one before for a
    later month); RFC 3339 stamps carry their offset."""
    written = time.mktime((2026, 1, 3, 12, 0, 0, 0, 0, -1))
    new_year_eve = time.mktime((2025, 12, 31, 23, 59, 58, 0, 0, -1))
    assert syslog_time("Dec 31 23:59:58 xs-a kernel: x", written) == new_year_eve
    assert syslog_time("Jan  2 08:00:00 xs-a kernel: x", written) == time.mktime((2026, 1, 2, 8, 0, 0, 0, 0, -1))
    utc = 1795676531.0  # date -u -d 2026-11-26T07:02:11Z +%s
    assert syslog_time("2026-11-26T08:02:11.512+01:00 xs-a kernel: x", written) == utc
    assert syslog_time("2026-11-26T07:02:11Z xs-a kernel: x", written) == utc
    assert syslog_time("[    2.742894] NR_IRQS: 1, nr_irqs: 1", written) is None


def test_unstamped_log_is_this_boots_from_its_last_boot_marker():
    """Without stamps or a boot time, the last ``Linux version`` line starts this boot's lines."""
    text = ("[    0.000000] Linux version 4.19.0+1\n[    2.7] " + EARLIER_NR_IRQS + "\n"
            "[    0.000000] Linux version 4.19.0+1\n[    2.7] " + THIS_NR_IRQS + "\n")
    mine = this_boots_lines(text, None, NOW)
    assert mine.boot_started and mine.text == "[    0.000000] Linux version 4.19.0+1\n[    2.7] " + THIS_NR_IRQS + "\n"


def test_stamped_lines_before_the_boot_are_dropped_whatever_their_number():
    """Of a log with an earlier boot's lines first, exactly the lines stamped from the boot on are kept."""
    earlier = "".join(stamped(EARLIER + 60 * i, "[%d.0] old line %d" % (i, i)) for i in range(1000))
    mine = "".join(stamped(BOOT + 3600 * i, "[%d.0] new line %d" % (i, i)) for i in range(1, 4))
    kept = this_boots_lines(earlier + mine, BOOT, NOW)
    assert kept.boot_started and kept.text == mine


def test_ring_records():
    """Records give their message; continuation lines and anything else are left out."""
    text = "6,1,2742894,-;NR_IRQS: 33024, nr_irqs: 2048\n SUBSYSTEM=xen\n4,2,2750855,c,caller=T1;xen:events: x\n"
    assert ring_messages(text) == "NR_IRQS: 33024, nr_irqs: 2048\nxen:events: x"


def test_ring_read_goes_on_past_overwritten_records_and_stops_at_its_end(dom0, monkeypatch):
    """EPIPE (records overwritten while reading) is read past; EAGAIN ends the read without blocking."""
    replies = [b"5,0,0,-;Linux version 6.1.0\n", OSError(errno.EPIPE, "Broken pipe"),
               b"6,181,2742894,-;" + EARLIER_NR_IRQS.encode() + b"\n", OSError(errno.EAGAIN, "again"),
               b"6,999,9,-;never read\n"]

    def read(fd, size):
        reply = replies.pop(0)
        if isinstance(reply, OSError):
            raise reply
        return reply

    monkeypatch.setattr(bootlog.os, "read", read)
    text = bootlog.read_ring(dom0.ring)
    assert text == "5,0,0,-;Linux version 6.1.0\n6,181,2742894,-;%s\n" % EARLIER_NR_IRQS
    assert replies == [b"6,999,9,-;never read\n"]


def test_the_real_kmsg_is_read_to_its_end_without_blocking():
    """This machine's /dev/kmsg: the read returns, and every line is a record or a continuation."""
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here")
    text = bootlog.read_ring("/dev/kmsg")
    assert text
    lines = text.splitlines()
    assert all(line.startswith(" ") or line.split(";", 1)[0].count(",") >= 3 for line in lines)
    assert len(ring_messages(text).splitlines()) == sum(1 for line in lines if not line.startswith(" "))


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
        handle.write(boot_text + "".join(later_lines(booted, 1)).encode())
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
