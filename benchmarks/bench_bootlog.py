"""The search for this boot's kernel lines over kern.log, its rotations and the ring buffer, and
what a decision pays once it is kept. Prints figures."""

import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.kernlog import boot_lines, stamped  # noqa: E402
from xsguard import bootlog, config, probes  # noqa: E402
from xsguard.model.ceilings import LINUX_IRQS, XEN_PORTS  # noqa: E402

MIB_PER_LOG = 50
BOTH = [XEN_PORTS, LINUX_IRQS]


def boot(at, nr_irqs, abi):
    return "".join(boot_lines(at, "NR_IRQS: %d, nr_irqs: 2048, preallocated irqs: 16" % nr_irqs,
                              "xen:events: Using %s ABI" % abi))


def write_chatter(handle, booted, since, until, mib):
    """``mib`` MiB of ordinary kernel lines of the boot begun at ``booted``, from ``since`` to
    ``until``: each MiB one line repeated, at its time."""
    line = "[%7d.000000] vif1.0: tx queue 0 stalled, resetting the ring of the guest's backend"
    step = (until - since) / mib
    for block in range(mib):
        at = since + block * step
        text = stamped(at, line % max(3, at - booted))
        handle.write((text * (1024 * 1024 // len(text))).encode())


def write(path, parts, written_at):
    """A log made of ``parts``: strings, or (booted, since, until, mib) chatter."""
    with (gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb")) as handle:
        for part in parts:
            if isinstance(part, str):
                handle.write(part.encode())
            else:
                write_chatter(handle, *part)
    os.utime(path, (written_at, written_at))


def timed(*args, memory=False):
    """The search's result, its time (and why it fell short, if it did), and (``memory``) the peak
    memory of a process that makes it and of one that does not (each a child of this one)."""
    t, cpu = time.perf_counter(), time.process_time()
    found = bootlog.search(*args)
    ms = "%.0f ms (%.0f ms of CPU)%s" % ((time.perf_counter() - t) * 1000, (time.process_time() - cpu) * 1000,
                                         ", " + found.shortfall if found.shortfall else "")
    peaks = [0, 0]
    for n, call in enumerate(("pass", "bootlog.search(*%r)" % (args,)) if memory else ()):
        code = ("from xsguard import bootlog; %s; print(next(line.split()[1] for line in open('/proc/self/status')"
                " if line.startswith('VmHWM:')))" % call)
        peaks[n] = (int(subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True,
                                        cwd=ROOT).stdout))
    return found, ms, "peak RSS %.1f MiB (%.1f MiB without the search)" % (peaks[1] / 1024, peaks[0] / 1024)


def main():
    now = int(time.time())
    booted = now - 30 * 86400
    earlier = booted - 90 * 86400
    with tempfile.TemporaryDirectory() as tmp:
        log, ring, stat = (os.path.join(tmp, n) for n in ("kern.log", "kmsg", "stat"))
        with open(stat, "w") as handle:
            handle.write("btime %d\n" % booted)
        with open(os.path.join(tmp, "uptime"), "w") as handle:
            handle.write("%d.00 0.00\n" % (now - booted))
        open(ring, "w").close()
        earlier_boot = (earlier, earlier, booted - 60, MIB_PER_LOG // 2)
        write(log + ".2.gz", [boot(earlier, 524544, "FIFO-based"), earlier_boot, boot(booted, 33024, "2-level"),
                              (booted, booted, booted + 10 * 86400, MIB_PER_LOG // 2)], booted + 10 * 86400)
        write(log + ".1", [(booted, booted + 10 * 86400, booted + 20 * 86400, MIB_PER_LOG)], booted + 20 * 86400)
        write(log, [(booted, booted + 20 * 86400, now, MIB_PER_LOG)], now)
        found, ms, _ = timed(log, ring, stat, BOTH)
        print("first search: boot lines over kern.log, .1 and .2.gz (%d MiB each), found in kern.log.2.gz after an"
              " earlier boot's lines: %s, %s" % (MIB_PER_LOG, sorted(found.lines), ms))
        write(log + ".2.gz", [earlier_boot, (booted, booted, booted + 10 * 86400, MIB_PER_LOG // 2)],
              booted + 10 * 86400)
        found, ms, _ = timed(log, ring, stat, BOTH)
        print("first search: the same logs, boot lines in none: %s, %s" % (sorted(found.lines), ms))

        for name in (".1", ".2.gz"):
            os.remove(log + name)
        write(log, [boot(booted, 33024, "2-level"), (booted, booted, now, 200)], now)
        found, ms, grew = timed(log, ring, stat, BOTH, memory=True)
        print("first search: a 200 MiB kern.log, boot lines at its head: %s, %s, %s"
              % (sorted(found.lines), ms, grew))
        mention = stamped(booted + 20, "[    1.000000] " + "NR_IRQS: x " * 48)
        write(log, [boot(booted, 33024, "2-level")[:80] + "\n" + mention * (12 * 1024 * 1024 // len(mention))
                    + boot(booted, 33024, "2-level")], now)
        found, ms, _ = timed(log, ring, stat, BOTH)
        print("first search: 12 MiB of lines that only mention NR_IRQS, then the boot lines: %s, %s"
              % (sorted(found.lines), ms))
        write(log, [(booted, now - 60, now, 2)], now)
        write(log + ".1.gz", [(booted, booted, now - 60, 1024)], now - 60)
        found, ms, grew = timed(log, ring, stat, BOTH, memory=True)
        print("first search: a %.1f MiB kern.log.1.gz that gunzips to 1 GiB: %s, %s, %s"
              % (os.path.getsize(log + ".1.gz") / 1048576, sorted(found.lines), ms, grew))

        write(log, [boot(booted, 33024, "2-level"), (booted, booted, now, 20)], now)
        os.remove(log + ".1.gz")
        with open(os.path.join(tmp, "boot_id"), "w") as handle:
            handle.write("5c1b0e2c-9d7e-4b5e-8f0e-3e2a1b0c9d8e\n")
        cfg = config.defaults().with_values({
            "dom0.kernel_log": log, "dom0.kernel_ring": ring, "dom0.proc_stat": stat,
            "dom0.boot_id": os.path.join(tmp, "boot_id"), "dom0.cmdline": os.path.join(tmp, "cmdline"),
            "dom0.hypervisor": os.path.join(tmp, "nohypervisor"), "ledger.path": os.path.join(tmp, "state", "l.json"),
        })
        t = time.perf_counter()
        first = probes.read_ceilings(cfg)
        ms = (time.perf_counter() - t) * 1000
        kept = []
        for _ in range(200):
            t = time.perf_counter()
            again = probes.read_ceilings(cfg)
            kept.append((time.perf_counter() - t) * 1000)
        assert again[1].limit == first[1].limit == 41220
        print("a decision's ceilings: first of the boot (a 20 MiB kern.log searched) %.0f ms; every later one,"
              " kept: median %.2f ms, max %.2f ms of 200" % (ms, statistics.median(kept), max(kept)))


if __name__ == "__main__":
    main()
