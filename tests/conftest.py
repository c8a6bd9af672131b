"""Shared fixtures: a full disk, a simulated pool, a XenAPI session to it."""

import os
import shutil
import ssl
import subprocess
import tempfile
import threading

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


@pytest.fixture
def https_url(sim, tmp_path):
    """The simulated pool's XenAPI over TLS, with a self-signed certificate for 127.0.0.1."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from xsguard.sim.api import Api
    from xsguard.sim.server import _Server

    server = _Server(0, Api(sim.pool))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d/" % server.server_address[1], cert
    server.shutdown()
    server.server_close()
