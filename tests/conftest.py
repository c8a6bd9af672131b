"""Shared fixtures: a full disk, a simulated pool, a XenAPI session to it; the suite's hygiene
guard (the machine's own xsguard directories untouched, no directory left behind)."""

import os
import pathlib
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import pytest

if TYPE_CHECKING:  # for the annotations: the fixtures import it when they run
    from xsguard.sim.server import Simulator

# What the suite must never change: this machine's own xsguard state, this boot's ledger and
# counters, and decision log (the defaults of [ledger] path, whose directory holds the rest, and
# [log] file), and where earlier versions kept their state.
MACHINE_DIRS = ("/var/log/xsguard", "/var/lib/xsguard", "/run/xsguard")
BASETEMP = "p"  # pytest's tmp_path directories, in the suite's temporary directory
WRITERS_GRACE = 10.0  # seconds a simulated host's detached journal writers may take to finish
PRIVATE_TMPDIR = pytest.StashKey[str]()  # the suite's temporary directory, when this run made it


def snapshot(directories: Iterable[str]) -> Dict[str, Tuple[int, int]]:
    """Every file and directory under ``directories``: its size and modification time."""
    found: Dict[str, Tuple[int, int]] = {}
    for top in directories:
        for parent, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(parent, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                found[path] = (st.st_size, st.st_mtime_ns)
        if os.path.isdir(top):
            found[top] = (0, 0)
    return found


def changes(before: Dict[str, Tuple[int, int]], after: Dict[str, Tuple[int, int]]) -> List[str]:
    """The paths added, removed or changed between two snapshots, sorted."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def pytest_configure(config: pytest.Config) -> None:
    """The whole suite, its subprocesses too, makes its temporary files in a directory of its own,
    which the hygiene guard inspects at the end (other suites on this machine use /tmp too)."""
    if os.environ.get("XSGUARD_TESTS_TMPDIR") is None:
        private = tempfile.mkdtemp(prefix="xsguard-tests-")
        os.environ["XSGUARD_TESTS_TMPDIR"] = os.environ["TMPDIR"] = private
        tempfile.tempdir = None
        config.stash[PRIVATE_TMPDIR] = private
        if not config.option.basetemp:  # tmp_path short enough for a simulator's UNIX socket in it
            config.option.basetemp = os.path.join(private, BASETEMP)


def pytest_unconfigure(config: pytest.Config) -> None:
    private = config.stash.get(PRIVATE_TMPDIR, None)
    if private:
        shutil.rmtree(private, ignore_errors=True)


def detached_writers(root: str) -> List[int]:
    """Processes of a simulated host under ``root`` still running (a hook's detached journal writer)."""
    marker = ("XSGUARD_CONFIG=" + root).encode()
    found: List[int] = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and pid != str(os.getpid()):
            try:
                with open("/proc/%s/environ" % pid, "rb") as handle:
                    if marker in handle.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found


def wait_for_writers(root: str, grace: float = WRITERS_GRACE, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait, no longer than ``grace``, until no simulated host under ``root`` runs a process."""
    until = clock() + grace
    while detached_writers(root) and clock() < until:
        sleep(0.05)


def remove_pool_root(root: str) -> List[int]:
    """Remove a simulated pool's directory once its hosts' detached writers are done (they would
    recreate it); the writers still running after the grace, if any."""
    wait_for_writers(root)
    shutil.rmtree(root, ignore_errors=True)
    return detached_writers(root)


@pytest.fixture(scope="session", autouse=True)
def hygiene() -> Iterator[None]:
    """Fails the suite if it changed the machine's own xsguard directories (``MACHINE_DIRS``), or left
    a directory in its temporary directory (a simulator's, a hook writer's)."""
    before = snapshot(MACHINE_DIRS)
    private = os.environ.get("XSGUARD_TESTS_TMPDIR", "")
    yield
    touched = changes(before, snapshot(MACHINE_DIRS))
    left = sorted(n for n in os.listdir(private) if n != BASETEMP) if os.path.isdir(private) else []
    problems = []
    if touched:
        problems.append("the suite changed this machine's own xsguard files: %s" % ", ".join(touched[:10]))
    if left:
        problems.append("the suite left behind in %s: %s" % (private, ", ".join(left[:10])))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


class SmallDisk:
    """A directory on a 16 KiB tmpfs; ``fill()`` leaves it with no free byte."""

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self.path = os.path.join(mountpoint, "d")
        os.makedirs(self.path)

    def fill(self) -> None:
        fd = os.open(os.path.join(self.mountpoint, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    """A tiny tmpfs to fill up (mounting needs root, as dom0's tools have)."""
    mountpoint = tempfile.mkdtemp(prefix="xsguard-full-")
    if subprocess.call(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", mountpoint],
                       stderr=subprocess.DEVNULL) != 0:
        os.rmdir(mountpoint)
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield SmallDisk(mountpoint)
    finally:
        # a simulated host's detached writer may still write there: it would recreate the directory
        wait_for_writers(os.environ.get("XSGUARD_TESTS_TMPDIR") or tempfile.gettempdir())
        subprocess.call(["umount", mountpoint])
        os.rmdir(mountpoint)


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    """The XenAPI connections a test opened are closed when it ends."""
    yield
    from tests.pool import close_sessions

    close_sessions()


@pytest.fixture(scope="session")
def dom0_python(tmp_path_factory: pytest.TempPathFactory) -> Optional[str]:
    """The simulated dom0's python3: $XSGUARD_DOM0_PYTHON laid out as dom0 has it (make test-py36),
    else None (this interpreter)."""
    python = os.environ.get("XSGUARD_DOM0_PYTHON")
    if not python:
        return None
    from xsguard.sim import dom0python

    return dom0python.interpreter(python, str(tmp_path_factory.mktemp("dom0-python")))


@pytest.fixture
def sim(dom0_python: Optional[str]) -> Iterator["Simulator"]:
    """A simulated pool with xsguard's hook and plugin installed on every host."""
    from xsguard.sim.server import Simulator

    with Simulator(interpreter=dom0_python) as running:
        yield running
    remove_pool_root(running.pool.root)


@pytest.fixture
def bare_sim(dom0_python: Optional[str]) -> Iterator["Simulator"]:
    """A simulated pool whose hosts have no xsguard installed."""
    from xsguard.sim.server import Simulator

    with Simulator(install_xsguard=False, interpreter=dom0_python) as running:
        yield running
    remove_pool_root(running.pool.root)


@pytest.fixture
def api(sim: "Simulator") -> Iterator[Any]:
    from tests.pool import connect

    session = connect(sim.url)
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture
def bare_api(bare_sim: "Simulator") -> Iterator[Any]:
    from tests.pool import connect

    session = connect(bare_sim.url)
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture
def https_url(sim: "Simulator", tmp_path: pathlib.Path) -> Iterator[Tuple[str, str]]:
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


def run_xsguard(args: Sequence[str], env: Optional[Dict[str, str]] = None) -> Tuple[int, str, str]:
    """``python -m xsguard ARGS``: exit code, stdout and stderr (text)."""
    import sys

    proc = subprocess.run([sys.executable, "-m", "xsguard"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


@pytest.fixture
def workstation_config(tmp_path: pathlib.Path) -> str:
    """An operator's machine's config: no dom0 (no inventory, no lsevtchn), a log of its own."""
    conf = tmp_path / "xsguard.conf"
    conf.write_text("[dom0]\ninventory = %s\nlsevtchn = %s\n\n[log]\nfile = %s\n\n[ledger]\npath = %s\n"
                    % (tmp_path / "no-inventory", tmp_path / "no-lsevtchn", tmp_path / "decisions.log",
                       tmp_path / "state" / "ledger.json"))
    return str(conf)


@pytest.fixture
def workstation(sim: "Simulator", workstation_config: str) -> Callable[..., Tuple[int, str, str]]:
    """Run the command as on an operator's machine: no dom0, no inventory, xapi over HTTP."""

    def run(*args: str, env: Optional[Dict[str, str]] = None) -> Tuple[int, str, str]:
        return run_xsguard(["--config", workstation_config, "--xapi", sim.url] + list(args), env=env)

    return run
