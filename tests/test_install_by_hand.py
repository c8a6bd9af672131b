"""README's "Install by hand", step for step, into a temporary root (never the machine's /etc, /usr,
/var), then run with dom0's Python 3.6.15 in isolated mode, as xapi and xenopsd run it."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import remove_pool_root
from tests.dom0 import clean_interpreter, point_at
from tests.pool import connect, failure, make_vm, wait_for
from xsguard.sim.server import Simulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# what the RPM installs (packaging/xsguard.spec), which the steps must install too
INSTALLED = ["etc/xapi.d/vm-pre-start/50xsguard", "etc/xapi.d/vm-pre-migrate/50xsguard",
             "etc/xapi.d/vm-pre-resume/50xsguard", "etc/xapi.d/plugins/xsguard", "usr/bin/xsguard",
             "usr/bin/xsguard-rrdd", "usr/lib/systemd/system/xsguard-rrdd.service", "etc/xsguard/xsguard.conf",
             "etc/logrotate.d/xsguard", "usr/share/doc/xsguard/README.md", "usr/share/licenses/xsguard/LICENSE",
             "usr/lib/xsguard/xsguard/hook.py", "usr/lib/xsguard/structlog-21.5.0.dist-info/METADATA",
             "usr/lib/xsguard/tenacity-8.2.2.dist-info/METADATA",
             "usr/lib/xsguard/typing_extensions-4.1.1.dist-info/METADATA"]
EXECUTABLE = INSTALLED[:6]


def steps():
    """The README section's two shell blocks: fetching the wheels, installing on the host."""
    with open(os.path.join(REPO, "README.md")) as handle:
        text = handle.read()
    section = text.split("\n## Install by hand\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    assert len(blocks) == 2, blocks
    return blocks


def into(root, wheels, python3, block):
    """A block with every absolute path under ``root``, /tmp/w as ``wheels``, python3 as dom0's,
    pip3 as this interpreter's pip, and systemctl as a no-op (no systemd here)."""
    block = block.replace("/tmp/w", wheels)
    block = re.sub(r"(?<=[\s=])/(usr|etc|var|run)/", lambda m: "%s/%s/" % (root, m.group(1)), block)
    block = re.sub(r"^python3 ", python3 + " ", block, flags=re.M)
    block = re.sub(r"^pip3 ", "%s -m pip " % sys.executable, block, flags=re.M)
    return re.sub(r"^systemctl ", "true ", block, flags=re.M)


def dom0_python_36():
    """dom0's interpreter: $XSGUARD_DOM0_PYTHON, else pyenv's 3.6.15, else (neither here) this one."""
    found = os.environ.get("XSGUARD_DOM0_PYTHON")
    if not found:
        try:
            prefix = subprocess.run(["pyenv", "prefix", "3.6.15"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    check=True).stdout.decode().strip()
            found = os.path.join(prefix, "bin", "python3.6")
        except (OSError, subprocess.CalledProcessError):
            found = None
    return found if found and os.access(found, os.X_OK) else sys.executable


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The steps run into a temporary root, from a copy of the checkout; the root and dom0's python3."""
    work = tmp_path_factory.mktemp("by-hand")
    root, wheels, checkout = work / "root", work / "w", work / "checkout"
    for name in ("xsguard", "plugins", "packaging"):
        shutil.copytree(os.path.join(REPO, name), str(checkout / name), ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), str(checkout))
    python36 = dom0_python_36()
    fetch, install = steps()
    for block in (fetch, install):
        script = "set -eu\n" + into(str(root), str(wheels), python36, block)
        subprocess.run(["sh", "-c", script], cwd=str(checkout), check=True, stdout=subprocess.PIPE)
    yield root, clean_interpreter(work / "dom0py", python36), python36
    assert remove_pool_root(str(root)) == []  # the hooks' detached writers done before it goes


def test_the_steps_install_what_the_rpm_installs(installed):
    """Every file the RPM installs is there (the three hooks, the plugin and the two commands executable),
    the state and log directories are 0700, the simulator is left out."""
    root, _, _ = installed
    missing = [p for p in INSTALLED if not (root / p).is_file()]
    assert missing == []
    assert [p for p in EXECUTABLE if not os.access(str(root / p), os.X_OK)] == []
    for directory in ("run/xsguard", "var/log/xsguard"):
        assert oct((root / directory).stat().st_mode & 0o777) == "0o700", directory
    assert not (root / "usr/lib/xsguard/xsguard/sim").exists()


def test_what_they_installed_runs_on_dom0s_python(installed, tmp_path):
    """With dom0's Python (3.6.15) in isolated mode: the plugin's status loads the vendored structlog
    21.5.0 (which needs typing_extensions there), a start is admitted and another refused, the
    refusal reaches the decision log, and /usr/bin/xsguard answers --version and need."""
    root, python, python36 = installed
    for script in ("etc/xapi.d/vm-pre-start/50xsguard", "etc/xapi.d/plugins/xsguard", "usr/bin/xsguard"):
        point_at(python, str(root / script))
    version = subprocess.run([python36, "-c", "import platform; print(platform.python_version())"],
                             stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    if python36 != sys.executable:
        assert version == "3.6.15"
    private = str(root / "usr" / "lib" / "xsguard")
    with Simulator(install_xsguard=False) as sim:
        host = sim.pool.add_host("xs-hand", {"vcpus": "4", "abi": "2-level"}, root=str(root))
        api = connect(sim.url).xenapi
        api.sim.set_xsguard_config(host, {"dom0.port_limit": "120", "policy.margin": "8"})
        status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
        assert status["software"]["structlog"] == {"version": "21.5.0", "path": private}
        assert status["software"]["tenacity"] == {"version": "8.2.2", "path": private}
        api.VM.start(make_vm(api, "small", vcpus=2, hvm=True, affinity=host), False, False)
        details = failure(api.VM.start, make_vm(api, "big", vcpus=32, hvm=True, firmware="uefi", disks=4, nics=2,
                                                    affinity=host),
                          False, False)
        assert details[:2] == ["XAPI_HOOK_FAILED", "vm-pre-start/50xsguard"] and details[4] == "2"
        log = root / "var/log/xsguard/decisions.log"
        refused = wait_for(lambda: log.exists() and [json.loads(line) for line in log.read_text().splitlines()
                                                     if '"start_refused"' in line])
        assert [r["vm_name"] for r in refused] == ["big"]
        cli = [str(root / "usr/bin/xsguard"), "--config", str(root / "etc/xsguard/xsguard.conf")]
        out = subprocess.run(cli + ["--version"], stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
        assert out.returncode == 0 and out.stdout.decode().startswith("xsguard ")
        need = subprocess.run(cli + ["need", "small", "--json"], stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
        assert json.loads(need.stdout.decode())["total"] == 1 + 1 + 3 + 1 + 2 * 2
