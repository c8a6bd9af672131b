"""xsguard simulate as a newcomer meets it: bad input refused in one line (exit 2) with nothing left
behind, the pool it serves described, its directories removed on SIGINT and SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest


def run(tmp_path, *args):
    """``xsguard simulate ARGS`` that must end by itself: exit code, stdout, stderr."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "xsguard", "simulate"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def left_in(tmp_path):
    return sorted(n for n in os.listdir(str(tmp_path)) if n.startswith("xsguard-"))


@pytest.fixture
def busy_port():
    """A port something already listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def scenario(tmp_path, text):
    path = tmp_path / ("pool-%d.json" % len(os.listdir(str(tmp_path))))
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", ["port in use", "missing file", "malformed JSON", "unknown top-level key",
                                  "unknown host key", "unknown dom0 key", "a host that is not an object"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, busy_port, case):
    """Each bad input: exit 2, one line on stderr saying what is wrong (no traceback), no directory left."""
    work = tmp_path / "tmp"
    work.mkdir()
    host = {"name": "xs-a", "dom0": {"vcpus": 8}}
    args, said = {
        "port in use": (["--port", str(busy_port)], "xsguard: cannot serve on 127.0.0.1 port %d: " % busy_port),
        "missing file": (["--scenario", str(tmp_path / "none.json")], "xsguard: cannot read scenario "),
        "malformed JSON": (["--scenario", scenario(tmp_path, '{"hosts": [')], "is not valid JSON: "),
        "unknown top-level key": (["--scenario", scenario(tmp_path, json.dumps({"hots": [host]}))],
                                  "unknown scenario keys in scenario: hots"),
        "unknown host key": (["--scenario", scenario(tmp_path, json.dumps({"hosts": [dict(host, cpus=4)]}))],
                             "unknown host keys in scenario: cpus"),
        "unknown dom0 key": (["--scenario", scenario(tmp_path, json.dumps({"hosts": [
            {"name": "xs-a", "dom0": {"cpus": 8}}]}))], "cpus"),
        "a host that is not an object": (["--scenario", scenario(tmp_path, json.dumps({"hosts": ["xs-a"]}))],
                                         "a host must be a JSON object"),
    }[case]
    code, out, err = run(work, *args)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and said in err and "Traceback" not in err
    assert left_in(work) == []


def start(tmp_path, *args, env=None):
    proc = subprocess.Popen([sys.executable, "-m", "xsguard", "simulate"] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(env or os.environ, TMPDIR=str(tmp_path)))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline().decode()
    assert first.startswith("XenAPI at http://127.0.0.1:"), proc.stderr.read().decode()
    return proc, first.split()[-1]


def test_simulate_describes_the_pool_it_serves(tmp_path):
    """On start: the hosts, each VM with its state, host and what it would need there, and what to try."""
    proc, url = start(tmp_path)
    with proc:  # its pipes closed at the end
        try:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
            err = proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = err.splitlines()
    assert "xsguard simulate: hosts xs-a, xs-b" in lines
    rows = [line.split() for line in lines if line.startswith(("web-", "sql-", "spare"))]
    # web: 2 vCPUs HVM, 1 disk, 1 VIF of 2 queues x 2 on an 8-vCPU dom0: 1 + 1 + 3 + 1 + 4 = 10;
    # sql: 4 vCPUs UEFI Windows, 2 disks: 1 + 1 + 5 + 4 + 2 + (4 x 2 + 1 control ring) = 22
    assert [(r[0], r[2], r[3], r[4]) for r in rows if r[0] != "spare"] == [
        ("sql-01", "Running", "xs-b", "22"), ("sql-02", "Running", "xs-b", "22"), ("web-01", "Running", "xs-a", "10"),
        ("web-02", "Running", "xs-a", "10"), ("web-03", "Running", "xs-a", "10")]
    assert "try: xsguard --xapi %s vms | pool | capacity --like <vm> | place <vm> | denials" % url in lines
    assert left_in(tmp_path) == []


def fake_dom0_python_cache(tmp_path):
    """A prepared dom0-python cache for this interpreter (its own site-packages stand in for the wheels)."""
    from xsguard.sim import dom0python

    cache = tmp_path / "cache"
    version = dom0python.version_of(sys.executable)
    for sub in ("lib", "site"):
        (cache / version / sub).mkdir(parents=True)
    (cache / version / "complete").write_text("")
    return str(cache)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_dom0_python_directory_is_removed_on_a_signal(tmp_path, sig):
    """--dom0-python lays out a directory for the simulated dom0s' interpreter: gone after SIGTERM or SIGINT."""
    work = tmp_path / "tmp"
    work.mkdir()
    env = dict(os.environ, XSGUARD_DOM0_CACHE=fake_dom0_python_cache(tmp_path))
    proc, _ = start(work, "--empty", "--dom0-python", sys.executable, env=env)
    with proc:  # its pipes closed at the end
        try:
            assert [n for n in left_in(work) if n.startswith("xsguard-dom0-")] != []
            proc.send_signal(sig)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert left_in(work) == []
