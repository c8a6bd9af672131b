"""A simulated dom0: its event-channel port table and IRQs, shown as a real dom0 shows them.

Ports are handed out lowest-free-first as Xen does; every port a guest binds also takes a
Linux IRQ. The state is written to files in the host's root after every change: the output
``lsevtchn 0`` prints, ``/proc/interrupts``, and the boot messages in kern.log (as rsyslog
writes them), in the ring buffer (as /dev/kmsg gives them) and /proc/stat's boot time.
"""

import heapq
import os
import time
import uuid
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .store import ApiError

PORT_LIMITS = {"fifo": 131071, "2-level": 4095, "2-level-32": 1023}
IRQ_SPARSE_EXTRA = 8196
UPTIME = 600  # seconds dom0 has been up when its host joins the pool
SYSLOG_START = 21  # seconds from boot until rsyslog starts and writes the boot messages to kern.log
SYSLOG_HOSTNAME = "xcp-ng-dom0"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Port(NamedTuple):
    number: int
    vcpu: int
    remote_domid: int
    remote_port: int
    action: str  # the consumer's name in /proc/interrupts


class NoSpace(Exception):
    """dom0 is out of ports or IRQs (Xen's -ENOSPC, errno 28)."""


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.rename(tmp, path)


class Dom0:
    """One host's dom0."""

    def __init__(self, root: str, vcpus: int = 16, abi: str = "fifo",
                 port_limit: Optional[int] = None, irq_limit: int = 41220,
                 baseline_ports: Optional[int] = None, xen_version: str = "4.17") -> None:
        self.root = root
        self.booted_at = int(time.time()) - UPTIME
        self.configure(vcpus=vcpus, abi=abi, port_limit=port_limit, irq_limit=irq_limit,
                       baseline_ports=baseline_ports, xen_version=xen_version)
        self.ports: Dict[int, Port] = {}
        self.guest_ports: Dict[int, List[int]] = {}  # domid -> port numbers
        self.free: List[int] = []
        self.next_port = 1
        self._install_baseline()

    def configure(self, vcpus: int, abi: str, port_limit: Optional[int], irq_limit: int,
                  baseline_ports: Optional[int], xen_version: str) -> None:
        if abi not in PORT_LIMITS:
            raise ApiError("INVALID_VALUE", "abi", abi)
        self.vcpus = int(vcpus)
        self.abi = abi
        self.port_limit = int(port_limit) if port_limit else PORT_LIMITS[abi]
        self.irq_limit = int(irq_limit)
        # per vCPU: a timer VIRQ and five IPIs; then physical IRQs, VIRQs, xenstored's channel
        self.baseline_ports = int(baseline_ports) if baseline_ports else 6 * self.vcpus + 16
        self.baseline_irqs = self.baseline_ports + 16  # MSI-X of NICs and HBAs take IRQs too
        self.xen_version = xen_version

    def as_struct(self) -> Dict[str, Any]:
        return {
            "vcpus": str(self.vcpus), "abi": self.abi, "port_limit": str(self.port_limit),
            "irq_limit": str(self.irq_limit), "baseline_ports": str(self.baseline_ports),
            "ports_used": str(len(self.ports)), "irqs_used": str(self.irqs_used),
            "by_remote_domain": {str(d): str(len(p)) for d, p in sorted(self.guest_ports.items()) if p},
        }

    @property
    def irqs_used(self) -> int:
        return self.baseline_irqs + len(self.ports) - self.baseline_ports

    def _take(self) -> int:
        if self.free:
            return heapq.heappop(self.free)
        number = self.next_port
        self.next_port += 1
        return number

    def _install_baseline(self) -> None:
        cpu_kinds = ["timer"] + ["resched", "callfunc", "callfuncsingle", "spinlock", "irqwork"]
        count = 0
        for cpu in range(self.vcpus):
            for kind in cpu_kinds:
                if count < self.baseline_ports:
                    n = self._take()
                    self.ports[n] = Port(n, cpu, -1, 0, "%s%d" % (kind, cpu))
                    count += 1
        irq = 1
        while count < self.baseline_ports:
            n = self._take()
            self.ports[n] = Port(n, n % self.vcpus, -2, irq, "megasas0-msix%d" % irq)
            irq += 1
            count += 1

    def bind(self, domid: int, actions: List[str]) -> List[int]:
        """Bind one port per action for guest ``domid``; all or none (NoSpace)."""
        if len(self.ports) + len(actions) > self.port_limit:
            raise NoSpace("no free event channel port (%d of %d in use)" % (len(self.ports), self.port_limit))
        if self.irqs_used + len(actions) > self.irq_limit:
            raise NoSpace("no free IRQ descriptor (%d of %d in use)" % (self.irqs_used, self.irq_limit))
        taken = self.guest_ports.setdefault(domid, [])
        numbers = []
        for action in actions:
            n = self._take()
            self.ports[n] = Port(n, n % self.vcpus, domid, len(taken) + 1, action)
            taken.append(n)
            numbers.append(n)
        return numbers

    def release(self, domid: int) -> int:
        """Close every port of ``domid``; returns how many."""
        numbers = self.guest_ports.pop(domid, [])
        for n in numbers:
            del self.ports[n]
            heapq.heappush(self.free, n)
        return len(numbers)

    # what a real dom0 shows

    def lsevtchn_text(self) -> str:
        lines = []
        for n in sorted(self.ports):
            p = self.ports[n]
            if p.remote_domid >= 0:
                state = "Interdomain (Connected) - Remote Domain %d, Port %d" % (p.remote_domid, p.remote_port)
            elif p.remote_domid == -2:
                state = "Physical IRQ %d" % p.remote_port
            elif p.action.startswith("timer"):
                state = "Virtual IRQ 0"
            else:
                state = "IPI"
            lines.append("%4d: VCPU %d: %s\n" % (n, p.vcpu, state))
        return "".join(lines)

    def interrupts_text(self) -> str:
        width = 11
        header = " " * 4 + "".join(("CPU%d" % c).rjust(width) for c in range(self.vcpus)) + "\n"
        zeros = "".join("0".rjust(width) for _ in range(self.vcpus))
        lines = [header]
        irq = 1
        extra_pirqs = self.baseline_irqs - self.baseline_ports
        for _ in range(extra_pirqs):
            lines.append("%3d:%s  xen-pirq    -msi-x     eth%d-TxRx-%d\n" % (irq, zeros, irq // 8, irq % 8))
            irq += 1
        for n in sorted(self.ports):
            p = self.ports[n]
            if p.remote_domid == -1:
                chip = "xen-percpu    -%-8s" % ("virq" if p.action.startswith("timer") else "ipi")
            elif p.remote_domid == -2:
                chip = "xen-pirq    -ioapic-edge"
            else:
                chip = "xen-dyn-lateeoi    -event    "
            lines.append("%3d:%s  %s %s\n" % (irq, zeros, chip, p.action))
            irq += 1
        lines.append("NMI:%s   Non-maskable interrupts\n" % zeros)
        lines.append("ERR:          0\n")
        return "".join(lines)

    def boot_messages(self) -> List[Tuple[int, int, str]]:
        """What the kernel printed at boot: (microseconds since boot, syslog priority, message)."""
        messages = [(0, 5, "Linux version 4.19.0+1 (mockbuild@xcp-ng) #1 SMP")]
        nr_irqs = self.irq_limit - IRQ_SPARSE_EXTRA
        if nr_irqs > 0:
            messages.append((2742894, 6, "NR_IRQS: %d, nr_irqs: %d, preallocated irqs: 16" % (nr_irqs, 440)))
        abi = "FIFO-based" if self.abi == "fifo" else "2-level"
        messages.append((2750855, 6, "xen:events: Using %s ABI" % abi))
        return messages

    def kernel_log_text(self) -> str:
        """The boot messages as dmesg prints them."""
        return "".join("[%5d.%06d] %s\n" % (usec // 1000000, usec % 1000000, text)
                       for usec, _, text in self.boot_messages())

    def kern_log_text(self) -> str:
        """/var/log/kern.log as rsyslog writes it when it starts: the boot messages, each behind
        its receiving time (local, no year), the host name and ``kernel:``."""
        stamp = syslog_stamp(self.booted_at + SYSLOG_START)
        return "".join("%s %s kernel: %s" % (stamp, SYSLOG_HOSTNAME, line)
                       for line in self.kernel_log_text().splitlines(True))

    def kmsg_text(self) -> str:
        """The ring buffer as /dev/kmsg gives it: ``priority,seq,usec,flags;message`` records."""
        return "".join("%d,%d,%d,-;%s\n" % (priority, seq, usec, text)
                       for seq, (usec, priority, text) in enumerate(self.boot_messages()))

    def write_state(self) -> None:
        """Refresh what dom0's probes read (called after every change, under the pool lock)."""
        _write_atomic(os.path.join(self.root, "run", "sim", "lsevtchn.0"), self.lsevtchn_text())
        _write_atomic(os.path.join(self.root, "proc", "interrupts"), self.interrupts_text())

    def write_boot_files(self) -> None:
        r = self.root
        self.booted_at = int(time.time()) - UPTIME
        _write_atomic(os.path.join(r, "var", "log", "kern.log"), self.kern_log_text())
        os.makedirs(os.path.join(r, "dev"), exist_ok=True)
        _write_atomic(os.path.join(r, "dev", "kmsg"), self.kmsg_text())
        _write_atomic(os.path.join(r, "proc", "stat"), "cpu  0 0 0 0 0 0 0 0 0 0\nbtime %d\n" % self.booted_at)
        cmdline = "root=LABEL=root-xcpng ro console=hvc0"
        if self.abi != "fifo":
            cmdline += " xen.fifo_events=0"
        _write_atomic(os.path.join(r, "proc", "cmdline"), cmdline + "\n")
        os.makedirs(os.path.join(r, "proc", "sys", "kernel", "random"), exist_ok=True)
        _write_atomic(os.path.join(r, "proc", "sys", "kernel", "random", "boot_id"), "%s\n" % uuid.uuid4())
        major, _, minor = self.xen_version.partition(".")
        _write_atomic(os.path.join(r, "sys", "hypervisor", "version", "major"), major + "\n")
        _write_atomic(os.path.join(r, "sys", "hypervisor", "version", "minor"), (minor or "0") + "\n")
        params = os.path.join(r, "sys", "module", "xen_netback", "parameters")
        _write_atomic(os.path.join(params, "max_queues"), "%d\n" % self.vcpus)
        _write_atomic(os.path.join(params, "separate_tx_rx_irq"), "Y\n")
        self.write_state()


def syslog_stamp(epoch: float) -> str:
    """rsyslog's traditional stamp, ``Nov  6 08:02:11``: local time, English month, no year."""
    t = time.localtime(epoch)
    return "%s %2d %02d:%02d:%02d" % (MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def action_name(domid: int, kind: str, index: Any = 0, queue: int = 0, direction: str = "") -> str:
    """The /proc/interrupts action name dom0 shows for one guest port."""
    names = {
        "xenstore": "evtchn:oxenstored",
        "console": "evtchn:xenconsoled",
        "qemu": "evtchn:qemu-system-i38",
        "varstored": "evtchn:varstored",
        "vbd": "evtchn:tapdisk",
        "blkif": "blkif-backend",
        "ctrl": "xen-netback-ctrl",
    }
    if kind == "vif":
        return "vif%d.%s-q%d-%s" % (domid, index, queue, direction)
    return names[kind]


def lay_out(root: str) -> None:
    for sub in ("run/sim", "proc", "var/log", "sys/hypervisor/version",
                "sys/module/xen_netback/parameters", "etc/xapi.d/vm-pre-start",
                "etc/xapi.d/plugins", "etc/xsguard", "usr/libexec/xen/bin", "var/lib/xsguard",
                "var/log/xsguard"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)

