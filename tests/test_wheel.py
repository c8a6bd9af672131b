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
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), str(source))
    for name in ("xsguard", "plugins"):
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
    return venv, site


def test_the_wheel_carries_the_hook_and_plugin(installed):
    """The installed package holds the hooks and the plugin, and the simulator takes them from there."""
    venv, site = installed
    out = subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                   "import xsguard.sim.pool as p; print(p.PLUGINS_DIR)"], cwd="/")
    plugins = out.decode().strip()
    assert plugins == os.path.join(site, "xsguard", "_plugins")
    assert sorted(os.listdir(plugins)) == ["vm-pre-migrate", "vm-pre-resume", "vm-pre-start", "xsguard"]
    for hook in ("vm-pre-migrate", "vm-pre-resume", "vm-pre-start"):
        assert os.listdir(os.path.join(plugins, hook)) == ["50xsguard"]


def test_demo_runs_from_another_folder(installed, tmp_path):
    """``xsguard demo`` from the wheel, run in an unrelated folder: VMs start until the hook refuses one."""
    venv, _ = installed
    proc = subprocess.run([str(venv / "bin" / "xsguard"), "demo"], cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "3rd party xapi hook failed\nhook_name: vm-pre-start/50xsguard" in out
    assert "stdout: xsguard refused to start VM 'sql-" in out
    assert "Devices that failed for lack of dom0 ports: 0" in out
