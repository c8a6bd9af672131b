"""Shared fixtures: a full disk, a simulated pool, a XenAPI session to it."""

import os
import shutil
import subprocess
import tempfile

import pytest


class SmallDisk:
    """A directory on a 16 KiB tmpfs; ``fill()`` leaves it with no free byte."""

    def __init__(self, mountpoint):
        self.mountpoint = mountpoint
        self.path = os.path.join(mountpoint, "d")
        os.makedirs(self.path)

    def fill(self):
        fd = os.open(os.path.join(self.mountpoint, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)


@pytest.fixture
def small_disk():
    """A tiny tmpfs to fill up (mounting needs root, as dom0's tools have)."""
    mountpoint = tempfile.mkdtemp(prefix="xsguard-full-")
    if subprocess.call(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", mountpoint],
                       stderr=subprocess.DEVNULL) != 0:
        os.rmdir(mountpoint)
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield SmallDisk(mountpoint)
    finally:
        subprocess.call(["umount", mountpoint])
        os.rmdir(mountpoint)


@pytest.fixture(autouse=True)
def _close_sessions():
    """The XenAPI connections a test opened are closed when it ends."""
    yield
    from tests.pool import close_sessions

    close_sessions()


@pytest.fixture(scope="session")
def dom0_python(tmp_path_factory):
    """The simulated dom0's python3: $XSGUARD_DOM0_PYTHON laid out as dom0 has it (make test-py36),
    else None (this interpreter)."""
    python = os.environ.get("XSGUARD_DOM0_PYTHON")
    if not python:
        return None
    from xsguard.sim import dom0python

    return dom0python.interpreter(python, str(tmp_path_factory.mktemp("dom0-python")))


@pytest.fixture
def sim(dom0_python):
    """A simulated pool with xsguard's hook and plugin installed on every host."""
    from xsguard.sim.server import Simulator

    with Simulator(interpreter=dom0_python) as running:
        yield running
    shutil.rmtree(running.pool.root, ignore_errors=True)


@pytest.fixture
def bare_sim(dom0_python):
    """A simulated pool whose hosts have no xsguard installed."""
    from xsguard.sim.server import Simulator

    with Simulator(install_xsguard=False, interpreter=dom0_python) as running:
        yield running
    shutil.rmtree(running.pool.root, ignore_errors=True)


@pytest.fixture
def api(sim):
    from tests.pool import connect

    session = connect(sim.url)
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture
def bare_api(bare_sim):
    from tests.pool import connect

    session = connect(bare_sim.url)
    yield session.xenapi
    session.xenapi.session.logout()
