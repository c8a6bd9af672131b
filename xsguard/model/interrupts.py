"""Parse ``/proc/interrupts`` (kernel/irq/proc.c): pure, no I/O.

One line per Linux IRQ descriptor: the number, one count per CPU, the chip, then the action
names. Spacing varies with the CPU count and the kernel, so lines are read by tokens.
Architecture lines (``NMI:``, ``LOC:``, ...) are not descriptors and are not counted.
"""

import re
from collections import Counter

from ..namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, List, Tuple

# compiled on their first use (``re`` keeps them): only ``parse`` (``status``) groups IRQs by consumer
_PER_CPU_NAME = r"([a-z_]+?)\d+\Z"
_VIF_QUEUE = r"vif(\d+)\.(\d+)-q(\d+)-(tx|rx)\Z"
_VIF_SHARED = r"vif(\d+)\.(\d+)-q(\d+)\Z"
_NUMBERED_QUEUE = r"(.*[-._][A-Za-z]*)\d+\Z"  # eth0-TxRx-3, virtio0-req.1, megasas0-msix7


class IrqTable(NamedTuple):
    """dom0's IRQ descriptors, counted."""

    irqs: int  # every numbered line: the gauge for the IRQ ceiling
    by_consumer: "Dict[str, int]"
    unparsed: "List[Tuple[int, str]]"


def consumer_of(action: str) -> str:
    """Group an action name: ``vif12.0-q1-rx`` -> ``netback``, ``timer0`` -> ``timer``,
    ``eth0-TxRx-3`` -> ``eth0-TxRx-*``."""
    if action.startswith("evtchn:"):
        return action
    if re.match(_VIF_QUEUE, action) or re.match(_VIF_SHARED, action):
        return "netback"
    per_cpu = re.match(_PER_CPU_NAME, action)
    if per_cpu and action.rstrip("0123456789") in _PER_CPU_ACTIONS:
        return per_cpu.group(1)
    queue = re.match(_NUMBERED_QUEUE, action)
    if queue:
        return queue.group(1) + "*"
    return action


_PER_CPU_ACTIONS = {
    "timer",
    "resched",
    "callfunc",
    "callfuncsingle",
    "spinlock",
    "irqwork",
    "debug",
}


# a numbered line: found from the newline before it, which ``re`` seeks fast (a ``^`` under re.M
# would try a match at every character: ten times slower over the 280 KB of a 16-vCPU dom0's table)
_DESCRIPTOR = re.compile(r"\n *\d+:")


def count(text: str) -> int:
    """How many IRQ descriptors are in use: the numbered lines (the hook needs no more)."""
    return len(_DESCRIPTOR.findall("\n" + text))


def parse(text: str) -> IrqTable:
    """Count the IRQ descriptors in one ``/proc/interrupts``."""
    lines = text.splitlines()
    if not lines:
        return IrqTable(0, {}, [])
    ncpu = sum(1 for tok in lines[0].split() if tok.startswith("CPU"))
    consumers: Counter[str] = Counter()
    unparsed: List[Tuple[int, str]] = []
    irqs = 0
    for lineno, line in enumerate(lines[1:], 2):
        tokens = line.split()
        if not tokens:
            continue
        label = tokens[0]
        if not (label.endswith(":") and label[:-1].isdigit()):
            continue  # NMI:, LOC:, ERR: ... are not descriptors
        irqs += 1
        if len(tokens) < ncpu + 2:
            unparsed.append((lineno, line))
            continue
        rest = tokens[ncpu + 2 :]
        if rest and rest[0].startswith("-"):
            rest = rest[1:]
        for action in " ".join(rest).split(","):
            action = action.strip()
            if not action:
                continue
            consumers[consumer_of(action)] += 1
    return IrqTable(irqs, dict(consumers), unparsed)
