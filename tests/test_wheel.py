"""The wheel, installed with pip into a fresh environment: the simulator finds the hook and plugin it carries."""

import glob
import os
import shutil
import subprocess
import sys

import pytest
import structlog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A virtual environment with the wheel of this tree installed by pip; its dependencies are this one's."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), str(source))
    for name in ("xsguard", "plugins", "packaging"):
        shutil.copytree(os.path.join(REPO, name), str(source / name), ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(source)],
                   check=True, stdout=subprocess.DEVNULL)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = glob.glob(str(venv / "lib" / "python*" / "site-packages"))[0]
    with open(os.path.join(site, "dependencies.pth"), "w") as handle:  # structlog, tenacity, XenAPI from here
        handle.write(os.path.dirname(os.path.dirname(structlog.__file__)) + "\n")
    wheel = glob.glob(str(root / "dist" / "xsguard-*.whl"))[0]
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", wheel], check=True, stdout=subprocess.DEVNULL)
    return venv, site, source


def test_the_wheel_carries_the_hook_and_plugin(installed):
    """The installed package holds the hooks and the plugin, and the simulator takes them from there."""
    venv, site, _ = installed
    out = subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                   "import xsguard.sim.pool as p; print(p.PLUGINS_DIR)"], cwd="/")
    plugins = out.decode().strip()
    assert plugins == os.path.join(site, "xsguard", "_plugins")
    assert sorted(os.listdir(plugins)) == ["vm-pre-migrate", "vm-pre-resume", "vm-pre-start", "xsguard"]
    for hook in ("vm-pre-migrate", "vm-pre-resume", "vm-pre-start"):
        assert os.listdir(os.path.join(plugins, hook)) == ["50xsguard"]


def test_demo_runs_from_another_folder(installed, tmp_path):
    """``xsguard demo`` from the wheel, run in an unrelated folder: VMs start until the hook refuses one."""
    venv, _, _ = installed
    proc = subprocess.run([str(venv / "bin" / "xsguard"), "demo"], cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "3rd party xapi hook failed\nhook_name: vm-pre-start/50xsguard" in out
    assert "stdout: xsguard refused to start VM 'sql-" in out
    assert "Devices that failed for lack of dom0 ports: 0" in out


LGPL = "GNU LESSER GENERAL PUBLIC LICENSE\n                       Version 2.1, February 1999"


def test_the_licence_rides_in_the_wheel_and_the_sdist(installed, tmp_path):
    """LICENSE (the LGPL 2.1's full text) is in the installed wheel's metadata and in the sdist."""
    import tarfile

    _, site, source = installed
    licences = glob.glob(os.path.join(site, "xsguard-*.dist-info", "licenses", "LICENSE"))
    assert len(licences) == 1
    with open(licences[0]) as handle:
        assert LGPL in handle.read()
    backend = tmp_path / "backend"  # the build backend pyproject.toml requires, as pip's isolation has it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(backend), "setuptools>=77"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist(%r)" % str(tmp_path)],
                   cwd=str(source), check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=str(backend)))
    with tarfile.open(glob.glob(str(tmp_path / "xsguard-*.tar.gz"))[0]) as sdist:
        found = [m for m in sdist.getnames() if m.endswith("/LICENSE")]
        assert len(found) == 1
        member = sdist.extractfile(found[0])
        assert member is not None and LGPL in member.read().decode()


def test_a_new_user_tries_a_simulated_pool_from_the_wheel(installed, tmp_path):
    """From the installed wheel, in another folder: ``xsguard simulate`` names its VMs, and
    ``xsguard --xapi URL`` answers pool, vms, capacity and denials for that pool."""
    import json
    import signal

    venv, _, _ = installed
    xsguard = str(venv / "bin" / "xsguard")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    sim = subprocess.Popen([xsguard, "simulate"], cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env)
    assert sim.stdout is not None and sim.stderr is not None
    with sim:  # its pipes closed at the end
        try:
            url = sim.stdout.readline().decode().split()[-1]

            def ask(*args):
                proc = subprocess.run([xsguard, "--xapi", url] + list(args), cwd=str(tmp_path), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env)
                assert proc.returncode == 0, (args, proc.stderr.decode())
                return json.loads(proc.stdout.decode())

            assert [h["host_name"] for h in ask("pool", "--json")["hosts"]] == ["xs-a", "xs-b"]
            vms = {v["vm_name"]: (v["host_name"], v["need"]) for v in ask("vms", "--json")["vms"]}
            assert vms["web-01"] == ("xs-a", 10) and vms["sql-01"] == ("xs-b", 22)
            capacity = ask("capacity", "--like", "web-01", "--json")
            assert [h["host_name"] for h in capacity["hosts"]] == ["xs-a", "xs-b"] and capacity["need"] == 10
            assert ask("denials", "--json") == []
            sim.send_signal(signal.SIGTERM)
            assert sim.wait(20) == 0
            assert "web-01" in sim.stderr.read().decode()
        finally:
            if sim.poll() is None:
                sim.kill()
