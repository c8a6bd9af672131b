"""An installed tree run as dom0 runs it: dom0's python3 with only XenAPI and XenAPIPlugin, isolated."""

import os
import pathlib
import shutil
import subprocess
import sys
from typing import Optional

import XenAPI

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE_STANDIN = os.path.join(REPO, "xsguard", "sim", "dom0_site", "XenAPIPlugin.py")


def clean_interpreter(path: pathlib.Path, python: Optional[str] = None) -> str:
    """A venv of ``python`` (default this one) standing for dom0's /usr/bin/python3: dom0's XenAPI and
    XenAPIPlugin only. Another interpreter gets the XenAPI of the simulated dom0's cache (prepared once)."""
    python = python or sys.executable
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run([str(path / "bin" / "python3"), "-c", where], stdout=subprocess.PIPE,
                          check=True).stdout.decode().strip()
    if python == sys.executable:
        xenapi = os.path.dirname(XenAPI.__file__)
    else:
        from xsguard.sim import dom0python

        xenapi = os.path.join(dom0python.prepare(python), "site", "XenAPI")
    shutil.copytree(xenapi, os.path.join(site, "XenAPI"))
    shutil.copy(SITE_STANDIN, site)
    return str(path / "bin" / "python3")


def point_at(interpreter: str, path: str) -> None:
    """What dom0's /usr/bin/python3 is here: the installed script's first line, in isolated mode."""
    with open(path) as handle:
        lines = handle.readlines()
    assert lines[0] == "#!/usr/bin/python3\n"
    lines[0] = "#!%s -I\n" % interpreter
    with open(path, "w") as handle:
        handle.writelines(lines)
