"""Admit or refuse a VM, for each ceiling: pure arithmetic and the operator's message."""

from ..namedtuple import NamedTuple
from .ceilings import CONFIGURED, LINUX_IRQS, XEN_PORTS, Ceiling
from .need import Need

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

ADMIT = "admit"
REFUSE = "refuse"


class Check(NamedTuple):
    """One ceiling's figures for one start."""

    ceiling: str
    limit: "Optional[int]"  # None: unknown, not checked
    origin: str
    basis: str
    source: str
    used: int
    promised: int
    margin: int
    need: int

    @classmethod
    def of(cls, c: Ceiling, used: int, promised: int, margin: int, need: int) -> "Check":
        return cls(c.name, c.limit, c.origin, c.basis, c.source, used, promised, margin, need)

    @property
    def free(self) -> "Optional[int]":
        """What is left for guests before this start (margin kept back)."""
        if self.limit is None:
            return None
        return self.limit - self.margin - self.used - self.promised

    @property
    def free_after(self) -> "Optional[int]":
        free = self.free
        return None if free is None else free - self.need

    @property
    def fits(self) -> bool:
        free_after = self.free_after
        return free_after is None or free_after >= 0

    def as_json(self) -> "Dict[str, Any]":
        return {
            "ceiling": self.ceiling,
            "limit": self.limit,
            "source": self.source,
            "used": self.used,
            "promised": self.promised,
            "margin": self.margin,
            "need": self.need,
            "free": self.free,
            "free_after": self.free_after,
            "fits": self.fits,
        }


class Verdict(NamedTuple):
    """The decision and every figure behind it; the rest is derived from the checks."""

    checks: "List[Check]"
    need: Need
    host_name: str

    @property
    def admitted(self) -> bool:
        return all(c.fits for c in self.checks)

    @property
    def verdict(self) -> str:
        return ADMIT if self.admitted else REFUSE

    @property
    def binding(self) -> Check:
        """The refusing ceiling, or the tightest known one when admitted."""
        refusing = [c for c in self.checks if not c.fits]
        known = [c for c in self.checks if c.limit is not None] or self.checks
        return min(refusing or known, key=lambda c: (c.free_after is None, c.free_after or 0))

    @property
    def message(self) -> str:
        return explain(self)

    def as_json(self) -> "Dict[str, Any]":
        b = self.binding
        return {
            "verdict": self.verdict,
            "vm_uuid": self.need.vm_uuid,
            "vm_name": self.need.vm_name,
            "host": self.host_name,
            "need": b.need,
            "used": b.used,
            "promised": b.promised,
            "limit": b.limit,
            "margin": b.margin,
            "free": b.free,
            "free_after": b.free_after,
            "ceiling": b.ceiling,
            "checks": [c.as_json() for c in self.checks],
            "breakdown": self.need.as_json()["breakdown"],
            "message": self.message,
        }


CEILING_TITLES = {XEN_PORTS: "Xen event-channel port", LINUX_IRQS: "Linux IRQ descriptor"}


def remedy(check: Check) -> str:
    """How the binding ceiling itself could be raised, from where its limit came."""
    if check.ceiling == LINUX_IRQS:
        return "raise dom0's IRQ limit: a dom0 kernel built with a larger NR_IRQS"
    if check.origin == CONFIGURED:
        return "check the port limit set in /etc/xsguard/xsguard.conf ([dom0] port_limit)"
    if check.basis == "fifo":
        return "nothing raises it further: FIFO's 131071 ports are Xen's most"
    return "raise the port limit: FIFO event channels (drop xen.fifo_events=0 from dom0's command line)"


def judge(need: Need, host_name: str, ceilings: "List[Ceiling]", used: "Dict[str, int]", promised: int,
          margin: int) -> Verdict:
    """Check ``need`` against every ceiling; the VM is refused if any would be exceeded.

    ``used`` maps a ceiling name to what dom0 holds now; ``promised`` is what VMs admitted
    earlier are still owed. Every dom0 port a guest takes also takes a Linux IRQ, so the
    need is the same against both ceilings.
    """
    checks = [Check.of(c, used.get(c.name, 0), promised, margin, need.total) for c in ceilings]
    return Verdict(checks, need, host_name)


def headroom(ceiling: Ceiling, used: int, promised: int, margin: int) -> "Optional[int]":
    """What is left for guests under ``ceiling`` (None when its limit is unknown)."""
    return Check.of(ceiling, used, promised, margin, 0).free


def explain(verdict: Verdict) -> str:
    """A few lines of plain ASCII: what, why, and what the operator can do."""
    need, binding = verdict.need, verdict.binding
    consumers = ", ".join("%s %d" % (ln.consumer, ln.ports) for ln in need.largest(3))
    vm_uuid = ascii_safe(need.vm_uuid)
    vm = "VM '%s' (%s)" % (ascii_safe(need.vm_name), vm_uuid)
    host_name = ascii_safe(verdict.host_name)
    if verdict.admitted:
        return "xsguard: %s fits on host '%s': needs %d dom0 event channels, %s left under the %s limit." % (
            vm,
            host_name,
            need.total,
            binding.free if binding.free is not None else "unknown",
            CEILING_TITLES.get(binding.ceiling, binding.ceiling),
        )
    lines = [  # the first line says it on its own: a storage migration shows it inside an INTERNAL_ERROR
        "xsguard refused to start %s on host '%s': it needs %d dom0 event channels; %d are left under the %s limit"
        % (vm, host_name, need.total, max(binding.free or 0, 0), CEILING_TITLES.get(binding.ceiling, binding.ceiling)),
        "(%d: %d in use, %d promised to VMs starting, %d kept free for dom0)."
        % (binding.limit or 0, binding.used, binding.promised, binding.margin),
        "Largest consumers: %s." % (consumers or "none"),
        "What to do:",
        "- start it on a host with room: xe vm-start uuid=%s on=<host>" % vm_uuid,
        "- or shut down another VM on this host",
        "- or %s" % remedy(binding),
        "- or, if this VM must start regardless, exempt it as root in dom0:"
        " add %s to [policy] bypass in /etc/xsguard/xsguard.conf" % vm_uuid,
    ]
    return "\n".join(lines)


def escaped(value: "Any", ascii_only: bool = False) -> str:
    """``value`` as text a terminal shows as is, the one escaper of every name xsguard shows:
    control, format and other unprintable characters (newline, ESC, U+009B, U+202E) become
    ``\\uXXXX``; other letters stay, or with ``ascii_only`` become ``\\uXXXX`` too."""
    text = str(value)
    if text.isprintable() and (not ascii_only or max(text, default="") < "\x80"):
        return text
    return "".join(ch if ch.isprintable() and (not ascii_only or ch < "\x80")
                   else "\\u%04x" % ord(ch) if ord(ch) < 0x10000 else "\\U%08x" % ord(ch) for ch in text)


def ascii_safe(text: str) -> str:
    """``escaped`` in printable ASCII: the hook's stdout is read with no LANG, on Python 3.6 too,
    and ends in a terminal."""
    return escaped(text, ascii_only=True)


def ascii_safe_lines(text: str) -> str:
    """``ascii_safe`` line by line, keeping the line breaks."""
    return "\n".join(ascii_safe(line) for line in text.rstrip("\n").split("\n"))
