"""Ceilings read from the kernel log, kept for the rest of that boot.

The boot lines (the event-channel ABI, ``NR_IRQS``) leave ``kern.log`` at its first
rotation; the ceilings they gave hold until dom0 reboots. So what the log said is kept in
the state directory under the boot's id (``/proc/sys/kernel/random/boot_id``) and used for
as long as the id is the same. Losing the file only means reading the log again.
"""

import json
import os
from typing import Dict, Optional

from .ceilings import Ceiling

KEPT = " since this boot's first reading"


def load(path: str, boot_id: str) -> Dict[str, Ceiling]:
    """The ceilings kept for this boot, by name (empty if none, another boot's, or unreadable)."""
    try:
        with open(path) as handle:
            doc = json.load(handle)
        if doc.get("boot_id") != boot_id:
            return {}
        return {name: Ceiling(name, int(limit), str(source)) for name, (limit, source) in doc["ceilings"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(path: str, boot_id: str, found: Dict[str, Ceiling]) -> None:
    """Keep these ceilings for this boot (best effort: atomic, errors ignored)."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "w") as handle:
            json.dump({"boot_id": boot_id,
                       "ceilings": {c.name: [c.limit, c.source] for c in found.values()}}, handle)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def kept(ceiling: Ceiling) -> Ceiling:
    """The same ceiling, its source saying it comes from the kept reading."""
    return ceiling if ceiling.source.endswith(KEPT) else ceiling._replace(source=ceiling.source + KEPT)


def from_log(ceiling: Optional[Ceiling]) -> bool:
    return ceiling is not None and ceiling.limit is not None and ceiling.source.endswith("(kernel log)")
