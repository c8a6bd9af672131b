"""The dom0 RPM: built from the committed tree, lint-clean, installed into a root, run isolated."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.dom0 import clean_interpreter, point_at
from tests.pool import connect, failure, make_vm, wait_for
from xsguard.sim.server import Simulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild is not installed")


@pytest.fixture(scope="module")
def rpms(tmp_path_factory):
    """The package, and a later release of it for the upgrade."""
    out = tmp_path_factory.mktemp("rpmbuild")
    built = []
    for release in ("", "upgrade"):
        proc = subprocess.run([os.path.join(REPO, "packaging", "build-rpm"), str(out / (release or "first")), release],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        built.append(proc.stdout.decode().strip().splitlines()[-1])
    return built


def rpm(root, *args):
    return subprocess.run(["rpm", "--root", str(root)] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=True).stdout.decode()


def run_scriptlet(rpm_path, name, root, arg):
    """Run one of the package's scriptlets against ``root`` (no shell or python3 inside it)."""
    scripts = subprocess.run(["rpm", "-qp", "--scripts", rpm_path], stdout=subprocess.PIPE, check=True).stdout.decode()
    body = scripts.split("%s scriptlet (using /bin/sh):\n" % name, 1)[1].split(" scriptlet (using", 1)[0]
    body = body.rsplit("\n", 1)[0].replace("/usr/lib/xsguard", str(root / "usr/lib/xsguard"))
    subprocess.run(["sh", "-c", body, name, str(arg)], check=True, env={"PATH": os.path.dirname(sys.executable)
                                                                        + ":/usr/bin:/bin"})


def test_rpmlint_has_no_errors(rpms):
    """rpmlint with the project's filters reports no error."""
    if shutil.which("rpmlint") is None:
        pytest.skip("rpmlint is not installed")
    proc = subprocess.run(["rpmlint", "-r", os.path.join(REPO, "packaging", "rpmlintrc"), rpms[0]],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert " 0 errors" in proc.stdout.decode(), proc.stdout.decode()


def test_contents(rpms):
    """Hooks, plugin (0755), private directory with dist-info versions, config, state and log dirs."""
    listing = subprocess.run(["rpm", "-qlpv", rpms[0]], stdout=subprocess.PIPE, check=True).stdout.decode()
    lines = {line.split()[-1]: line.split()[0] for line in listing.splitlines()}
    assert lines["/etc/xapi.d/vm-pre-start/50xsguard"] == "-rwxr-xr-x"
    assert lines["/etc/xapi.d/vm-pre-migrate/50xsguard"] == "-rwxr-xr-x"
    assert lines["/etc/xapi.d/vm-pre-resume/50xsguard"] == "-rwxr-xr-x"
    assert lines["/etc/xapi.d/plugins/xsguard"] == "-rwxr-xr-x"
    assert lines["/run/xsguard"] == "drwx------" and lines["/var/log/xsguard"] == "drwx------"
    for dist in ("structlog-21.5.0.dist-info", "tenacity-8.2.2.dist-info", "typing_extensions-4.1.1.dist-info"):
        assert "/usr/lib/xsguard/%s/METADATA" % dist in lines
    assert "/usr/lib/xsguard/xsguard/hook.py" in lines and "/usr/bin/xsguard" in lines
    assert not any("/xsguard/sim/" in p or "__pycache__" in p for p in lines)
    config = subprocess.run(["rpm", "-qcp", rpms[0]], stdout=subprocess.PIPE, check=True).stdout.decode().split()
    assert "/etc/xsguard/xsguard.conf" in config


def test_licence_and_the_units_documentation_are_installed(rpms):
    """The LGPL's text is the package's %license; the file xsguard-rrdd.service's Documentation= names
    is one the package installs."""
    listing = subprocess.run(["rpm", "-qlp", rpms[0]], stdout=subprocess.PIPE, check=True).stdout.decode().split()
    licences = subprocess.run(["rpm", "-qLp", rpms[0]], stdout=subprocess.PIPE, check=True).stdout.decode().split()
    assert licences == ["/usr/share/licenses/xsguard/LICENSE"]
    with open(os.path.join(REPO, "packaging", "xsguard-rrdd.service")) as handle:
        documentation = [line.split("=", 1)[1].strip() for line in handle if line.startswith("Documentation=")]
    assert documentation == ["file:///usr/share/doc/xsguard/README.md"]
    assert "/usr/share/doc/xsguard/README.md" in listing


def test_installed_hook_and_plugin_run_isolated(rpms, tmp_path):
    """Installed into a root and run by an isolated interpreter: the vendored libraries load,
    a start is admitted, another refused; upgrade keeps config and ledger; erase leaves nothing."""
    root = tmp_path / "root"
    rpm(root, "--initdb")
    rpm(root, "--nodeps", "--noscripts", "-i", rpms[0])
    run_scriptlet(rpms[0], "postinstall", root, 1)
    assert list((root / "usr/lib/xsguard/xsguard").glob("__pycache__/hook.*.pyc"))
    python = clean_interpreter(tmp_path / "dom0py")
    for script in ("etc/xapi.d/vm-pre-start/50xsguard", "etc/xapi.d/plugins/xsguard", "usr/bin/xsguard"):
        point_at(python, str(root / script))
    with Simulator(install_xsguard=False) as sim:
        host = sim.pool.add_host("xs-rpm", {"vcpus": "4", "abi": "2-level"}, root=str(root))
        api = connect(sim.url).xenapi
        api.sim.set_xsguard_config(host, {"dom0.port_limit": "120", "policy.margin": "8",
                                          "ledger.path": str(root / "run/xsguard/ledger.json")})  # the default's place
        status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
        private = str(root / "usr" / "lib" / "xsguard")
        assert status["software"]["structlog"] == {"version": "21.5.0", "path": private}
        assert status["software"]["tenacity"] == {"version": "8.2.2", "path": private}
        assert status["software"]["xsguard"]["path"] == private
        small = make_vm(api, "small", vcpus=2, hvm=True, affinity=host)
        api.VM.start(small, False, False)
        big = make_vm(api, "big", vcpus=32, hvm=True, firmware="uefi", disks=4, nics=2, affinity=host)
        details = failure(api.VM.start, big, False, False)
        assert details[:2] == ["XAPI_HOOK_FAILED", "vm-pre-start/50xsguard"] and details[4] == "2"
        assert "xsguard refused to start VM 'big'" in details[3]
        cli = subprocess.run([str(root / "usr/bin/xsguard"), "--config", str(root / "etc/xsguard/xsguard.conf"),
                              "need", "big", "--json"], stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
        assert json.loads(cli.stdout.decode())["total"] == 2 + 33 + 32 + 4 + 2 * 8
        ledger = root / "run/xsguard/ledger.json"
        assert ledger.exists()
        kept_config = (root / "etc/xsguard/xsguard.conf").read_text()

        rpm(root, "--nodeps", "--noscripts", "-U", rpms[1])
        assert (root / "etc/xsguard/xsguard.conf").read_text() == kept_config
        assert ledger.exists()
        assert "upgrade" in rpm(root, "-q", "xsguard")

    run_scriptlet(rpms[1], "preuninstall", root, 0)
    rpm(root, "--nodeps", "--noscripts", "-e", "xsguard")
    assert not (root / "etc/xapi.d/vm-pre-start/50xsguard").exists()
    assert not (root / "etc/xapi.d/vm-pre-migrate/50xsguard").exists()
    assert not (root / "etc/xapi.d/vm-pre-resume/50xsguard").exists()
    assert not (root / "etc/xapi.d/plugins/xsguard").exists()
    assert not (root / "usr/lib/xsguard").exists()
    assert not ledger.exists()


def test_rrdd_service_is_packaged_enabled_and_removed(rpms):
    """xsguard-rrdd and its unit (restarted on failure) are installed; the scriptlets enable it,
    and on erase stop and disable it, each guarded to do nothing outside the installed root."""
    listing = subprocess.run(["rpm", "-qlpv", rpms[0]], stdout=subprocess.PIPE, check=True).stdout.decode()
    lines = {line.split()[-1]: line.split()[0] for line in listing.splitlines()}
    assert lines["/usr/bin/xsguard-rrdd"] == "-rwxr-xr-x"
    assert lines["/usr/lib/systemd/system/xsguard-rrdd.service"] == "-rw-r--r--"
    scripts = subprocess.run(["rpm", "-qp", "--scripts", rpms[0]], stdout=subprocess.PIPE, check=True).stdout.decode()
    post = scripts.split("postinstall scriptlet")[1].split("scriptlet (using")[0]
    preun = scripts.split("preuninstall scriptlet")[1].split("scriptlet (using")[0]
    postun = scripts.split("postuninstall scriptlet")[1]
    guard = "[ -f /usr/lib/systemd/system/xsguard-rrdd.service ]"
    assert guard in post and "systemctl enable xsguard-rrdd.service" in post
    assert guard in preun and "systemctl disable xsguard-rrdd.service" in preun
    assert "systemctl stop xsguard-rrdd.service" in preun
    assert "systemctl daemon-reload" in postun


def test_installed_rrdd_runs_isolated_from_its_unit(rpms, tmp_path):
    """The installed unit's program, run as systemd would with a clean interpreter, serves its figures."""
    root = tmp_path / "root"
    rpm(root, "--initdb")
    rpm(root, "--nodeps", "--noscripts", "-i", rpms[0])
    python = clean_interpreter(tmp_path / "dom0py")
    for script in ("etc/xapi.d/vm-pre-start/50xsguard", "etc/xapi.d/plugins/xsguard", "usr/bin/xsguard-rrdd"):
        point_at(python, str(root / script))
    with Simulator(install_xsguard=False, rrdd=True, rrdd_interval=0.2) as sim:
        api = connect(sim.url).xenapi
        bare = api.sim.add_host("xs-bare", {"vcpus": "4", "abi": "2-level"})
        assert bare in sim.pool.rrdds and bare not in sim.pool.services  # no unit there, nothing started
        host = sim.pool.add_host("xs-rpm", {"vcpus": "4", "abi": "2-level"}, root=str(root))
        dom0 = api.sim.get_dom0(host)
        wait_for(lambda: "xsguard_ports_used" in [d["name_label"] for d in api.host.get_data_sources(host)])
        assert api.host.query_data_source(host, "xsguard_ports_used") == int(dom0["ports_used"])
        assert sim.pool.services[host].starts == 1
