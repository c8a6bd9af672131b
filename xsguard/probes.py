"""Read dom0's state: run lsevtchn, read /proc and /sys files. Thin: parsing lives elsewhere."""

import glob
import os
import subprocess
from typing import Dict, Optional

from .errors import ProbeFailed

LSEVTCHN_DIRS = ("/usr/libexec/xen/bin", "/usr/lib/xen/bin", "/usr/lib/xen-*/bin")


def find_lsevtchn(configured: str) -> str:
    """The lsevtchn to run: the configured path, or the first one found in Xen's usual places."""
    if configured != "auto":
        if not os.access(configured, os.X_OK):
            raise ProbeFailed("lsevtchn not found or not executable at %s ([dom0] lsevtchn)" % configured, configured)
        return configured
    for pattern in LSEVTCHN_DIRS:
        for directory in sorted(glob.glob(pattern), reverse=True):
            path = os.path.join(directory, "lsevtchn")
            if os.access(path, os.X_OK):
                return path
    raise ProbeFailed(
        "lsevtchn not found in %s: install Xen's tools or set [dom0] lsevtchn" % ", ".join(LSEVTCHN_DIRS)
    )


def run_lsevtchn(path: str, timeout: float, domid: int = 0) -> str:
    """The output of ``lsevtchn <domid>``, or ProbeFailed if it fails, hangs or is killed."""
    try:
        proc = subprocess.Popen(
            [path, str(domid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )
    except OSError as exc:
        raise ProbeFailed("cannot run %s: %s" % (path, exc.strerror or exc), path)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ProbeFailed("%s did not answer within %.1fs" % (path, timeout), path)
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        raise ProbeFailed(
            "%s exited with status %d%s" % (path, proc.returncode, ": " + detail[-1] if detail else ""),
            path,
        )
    return out.decode("utf-8", "replace")


def read_text(path: str, what: str) -> str:
    """A file's whole text, or ProbeFailed naming what it is for."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError as exc:
        raise ProbeFailed("cannot read %s (%s): %s" % (what, path, exc.strerror or exc), path)


def read_optional(path: str) -> Optional[str]:
    """A file's text, or None if it is absent or unreadable (for facts that have a fallback)."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_kernel_log_head(path: str, limit: int = 4 * 1024 * 1024) -> Optional[str]:
    """The kernel log's boot lines: its first ``limit`` bytes are where they are, if still there."""
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def xen_version(hypervisor_dir: str) -> Optional[str]:
    """``major.minor`` from /sys/hypervisor/version, or None."""
    major = read_optional(os.path.join(hypervisor_dir, "version", "major"))
    minor = read_optional(os.path.join(hypervisor_dir, "version", "minor"))
    if major is None or minor is None:
        return None
    return "%s.%s" % (major.strip(), minor.strip())


def backend_params(sys_module: str) -> Dict[str, str]:
    """netback's and blkback's parameters that set queue counts, keyed ``module.param``."""
    params = {}
    for module, name in (
        ("xen_netback", "max_queues"),
        ("xen_netback", "separate_tx_rx_irq"),
        ("xen_blkback", "max_queues"),
    ):
        text = read_optional(os.path.join(sys_module, module, "parameters", name))
        if text is not None:
            params["%s.%s" % (module, name)] = text.strip()
    return params


def read_inventory(path: str) -> Dict[str, str]:
    """/etc/xensource-inventory as a dict (``KEY='value'`` lines)."""
    inventory = {}
    for line in read_text(path, "the host inventory").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            inventory[key.strip()] = value.strip().strip("'\"")
    return inventory
