"""Parse ``lsevtchn <domid>`` output (Xen's tools/xcutils/lsevtchn.c): pure, no I/O.

Each open port is one line, ``"%4d: VCPU %u: "`` then its state. A line whose prefix
parses but whose state is new to us still counts as an open port (state ``unrecognised``);
a line that does not even have the prefix is kept in ``unparsed`` and counted too, so that a
count is never lower than what dom0 holds. Neither is dropped silently.
"""

import re
from collections import Counter

from ..namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Tuple

# the line-by-line fallback's patterns, compiled on its first use (``re`` keeps them)
_PREFIX = r"\s*(\d+): VCPU (\d+): (.*)\Z"
_INTERDOMAIN = r"Interdomain \((Connected|Waiting connection)\) - Remote Domain (\d+)(?:, Port (\d+))?\Z"
_SIMPLE = {
    "IPI": "ipi",
    "Unknown": "unknown",
}
_NUMBERED = (("Physical IRQ ", "pirq"), ("Virtual IRQ ", "virq"))

class PortTable(NamedTuple):
    """dom0's open event channels, counted."""

    ports: int  # open ports (every line)
    by_state: "Dict[str, int]"
    by_remote_domain: "Dict[int, int]"  # interdomain ports, connected or waiting, per domid
    unparsed: "List[Tuple[int, str]]"  # (line number, text) of lines that did not parse

    def leaked(self, live_domids: "Iterable[int]") -> "Dict[int, int]":
        """Ports whose remote domain is no longer alive: the backend never closed them."""
        live = set(live_domids) | {0}
        return {d: n for d, n in self.by_remote_domain.items() if d not in live}


_VALID_LINE = re.compile(
    r"^ *\d+: VCPU \d+: (?:Interdomain \((?:Connected|Waiting connection)\) - Remote Domain \d+(?:, Port \d+)?"
    r"|Physical IRQ \d+|Virtual IRQ \d+|IPI|Unknown)$",
    re.M,
)
_REMOTE_DOMAIN = re.compile(r"\) - Remote Domain (\d+)")


def parse(text: str) -> PortTable:
    """Count the ports in one ``lsevtchn`` output.

    When every line is well formed (the usual case, and a FIFO dom0 can print 131071 of
    them) the counts come from whole-text scans; otherwise line by line.
    """
    lines = text.splitlines()
    nonblank = [line for line in lines if line.strip()]
    if not nonblank or len(_VALID_LINE.findall(text)) != len(nonblank):
        return parse_lines(text)
    states = {
        "connected": text.count("Interdomain (Connected) - Remote Domain "),
        "waiting": text.count("Interdomain (Waiting connection) - Remote Domain "),
        "pirq": text.count(": Physical IRQ "),
        "virq": text.count(": Virtual IRQ "),
        "ipi": sum(1 for line in nonblank if line.endswith(": IPI")),
        "unknown": sum(1 for line in nonblank if line.endswith(": Unknown")),
    }
    remote = Counter(_REMOTE_DOMAIN.findall(text))
    return PortTable(
        len(nonblank),
        {k: v for k, v in states.items() if v},
        {int(d): n for d, n in remote.items()},
        [],
    )


def parse_lines(text: str) -> PortTable:
    """Count the ports line by line: exact whatever the text holds (the fallback of ``parse``)."""
    states: Counter[str] = Counter()
    remote: Counter[int] = Counter()
    unparsed: List[Tuple[int, str]] = []
    ports = 0
    prefix = re.compile(_PREFIX)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        ports += 1
        match = prefix.match(line)
        if match is None:
            states["unparsed"] += 1
            unparsed.append((lineno, line))
            continue
        states[_state(match.group(3), remote)] += 1
    return PortTable(ports, dict(states), dict(remote), unparsed)


def _state(rest: str, remote: "Counter[int]") -> str:
    if rest.startswith("Interdomain"):
        match = re.match(_INTERDOMAIN, rest)
        if match is None:
            return "unrecognised"
        domid = int(match.group(2))
        remote[domid] += 1
        return "connected" if match.group(1) == "Connected" else "waiting"
    simple = _SIMPLE.get(rest)
    if simple is not None:
        return simple
    for prefix, state in _NUMBERED:
        if rest.startswith(prefix) and rest[len(prefix) :].isdigit():
            return state
    return "unrecognised"
