"""A simulated dom0 on another Python: xsguard laid out as the RPM installs it, for that interpreter.

dom0 runs the hook and the plugin with its own ``/usr/bin/python3`` (3.6 on XenServer 8),
``/usr/lib/xsguard`` holding xsguard with the wheels the RPM bundles, and its own ``XenAPI``
and ``XenAPIPlugin``. ``interpreter(python)`` returns a ``python3`` for the simulated hosts that
runs ``python`` that way. The wheels are installed once into a cache directory with that
interpreter's own pip (``prepare``, which needs PyPI or a wheel directory); every later session
only links them, offline.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Sequence

# the releases packaging/xsguard.spec bundles (the last ones Python 3.6 installs)
BUNDLED = ("structlog==21.5.0", "tenacity==8.2.2", "typing_extensions==4.1.1")
DOM0_SITE = ("XenAPI",)  # dom0's own modules, from the xenapi wheel (its XenAPIPlugin: the stand-in)
DOM0_XENAPI = "xenapi==26.21.1"  # logs in as dom0's XenAPI.py of XenServer 8 does (pool.get_master, API version)
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)


class Dom0PythonError(Exception):
    """The interpreter is missing, or its dependencies are not in the cache and cannot be installed."""


def cache_root() -> str:
    """Where the wheels are installed: $XSGUARD_DOM0_CACHE, else ~/.cache/xsguard/dom0-python."""
    return os.environ.get("XSGUARD_DOM0_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "xsguard", "dom0-python")


def version_of(python: str) -> str:
    """``3.6.15``: what ``python`` says it is (Dom0PythonError if it does not run)."""
    try:
        out = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Dom0PythonError("cannot run %s as dom0's Python: %s" % (python, exc))
    return out.stdout.decode("ascii", "replace").strip()


def cache_dir(python: str) -> str:
    return os.path.join(cache_root(), version_of(python))


def prepare(python: str) -> str:
    """Install the bundled wheels and dom0's XenAPI for ``python`` into the cache; its directory."""
    target = cache_dir(python)
    if os.path.exists(os.path.join(target, "complete")):
        return target
    staging = tempfile.mkdtemp(prefix="staging-", dir=_made(cache_root()))
    try:
        for sub, wanted in (("lib", BUNDLED), ("site", (DOM0_XENAPI,))):
            _pip_install(python, os.path.join(staging, sub), wanted)
        open(os.path.join(staging, "complete"), "w").close()
        try:
            os.rename(staging, target)
        except OSError:  # another session finished first
            if not os.path.exists(os.path.join(target, "complete")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _made(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _pip_install(python: str, target: str, wanted: Sequence[str]) -> None:
    cmd = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", target] + list(wanted)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise Dom0PythonError("%s failed:\n%s" % (" ".join(cmd), proc.stdout.decode("utf-8", "replace")[-2000:]))


def interpreter(python: str, root: str) -> str:
    """A ``python3`` under ``root`` for simulated hosts: ``python`` with dom0's layout.

    ``root/usr-lib-xsguard`` is ``/usr/lib/xsguard`` (this xsguard and the bundled wheels),
    ``root/site-packages`` dom0's site directory (XenAPI, the XenAPIPlugin stand-in).
    Dom0PythonError if the cache was never prepared for ``python``.
    """
    cached = cache_dir(python)
    if not os.path.exists(os.path.join(cached, "complete")):
        raise Dom0PythonError("xsguard's dependencies are not installed for %s: run "
                              "`python -m xsguard.sim.dom0python %s` where PyPI is reachable" % (python, python))
    private = _made(os.path.join(root, "usr-lib-xsguard"))
    site = _made(os.path.join(root, "site-packages"))
    for entry in sorted(os.listdir(os.path.join(cached, "lib"))):
        os.symlink(os.path.join(cached, "lib", entry), os.path.join(private, entry))
    os.symlink(PACKAGE, os.path.join(private, "xsguard"))
    for entry in DOM0_SITE:
        os.symlink(os.path.join(cached, "site", entry), os.path.join(site, entry))
    shutil.copy(os.path.join(HERE, "dom0_site", "XenAPIPlugin.py"), site)
    wrapper = os.path.join(root, "python3")
    with open(wrapper, "w") as handle:
        handle.write('#!/bin/sh\nPYTHONPATH=%s:%s exec %s "$@"\n' % (site, private, python))
    os.chmod(wrapper, 0o755)
    return wrapper


def main(argv: List[str]) -> int:
    """``python -m xsguard.sim.dom0python PYTHON``: prepare the cache for PYTHON (CI, once)."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m xsguard.sim.dom0python PYTHON\n")
        return 2
    try:
        print(prepare(argv[0]))
    except Dom0PythonError as exc:
        sys.stderr.write("%s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
