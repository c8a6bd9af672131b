"""The hook's start-up stays lean: every VM start waits for it. tenacity (which pulls in asyncio) and
structlog are imported only off the fast path (a retry, the journal's detached writer); what only
rare paths need (the kernel-log search, placement hints, other hosts) is not imported by an
admission either."""

import json
import os
import subprocess
import sys

from tests.pool import make_vm, small_host

SLOW = ("structlog", "tenacity", "asyncio")
# the first decision of a boot searches the kernel logs (then kept: ``bootcache``); a refusal asks other
# hosts and words hints; lsevtchn is looked for only when not configured
RARE = ("xsguard.bootlog", "xsguard.peers", "xsguard.model.placement", "xsguard.alerts", "glob")
PROBE = r"""
import json, sys
from xsguard.hook import main
status = main(sys.argv[1:])
print(json.dumps([status, sorted(m for m in sys.modules if m.split(".")[0] in %r or m in %r)]))
""" % (SLOW, RARE)


def run_hook(api, host, vm):
    env = {"PATH": "/usr/bin:/bin",
           "XSGUARD_CONFIG": os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")}
    out = subprocess.run([sys.executable, "-c", PROBE, "-vmuuid", api.VM.get_uuid(vm), "-reason", "none"],
                         stdout=subprocess.PIPE, env=env, check=True).stdout.decode()
    return json.loads(out.strip().splitlines()[-1])


def test_an_admission_imports_neither_structlog_nor_tenacity(api):
    """A start admitted (the ledger not empty and the ceilings cached, so the steady state's calls): the
    hook process that answers imports neither structlog, tenacity or asyncio, nor what only rare paths
    need."""
    host = small_host(api, port_limit=4095)
    api.VM.start(make_vm(api, "first", affinity=host), False, False)
    assert run_hook(api, host, make_vm(api, "second", affinity=host)) == [0, []]


def test_a_refusal_imports_neither_structlog_nor_tenacity(api):
    """A start refused (its message, the other hosts asked): still neither structlog, tenacity nor
    asyncio in the hook process."""
    host = small_host(api, port_limit=60, vcpus=4)
    big = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    status, imported = run_hook(api, host, big)
    assert [status, [m for m in imported if m.split(".")[0] in SLOW]] == [2, []]


def test_status_imports_neither_structlog_nor_tenacity(api):
    """``status`` (the plugin's, the command's) says which structlog and tenacity run without importing them."""
    host = small_host(api, port_limit=4095)
    env = {"PATH": "/usr/bin:/bin",
           "XSGUARD_CONFIG": os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")}
    probe = ("import json, sys\nfrom xsguard import config, status\nfrom xsguard.deadline import Deadline\n"
             "data = status.read(config.load(), None, Deadline(5))\n"
             "print(json.dumps([sorted(data['software']), sorted(m for m in sys.modules if m.split('.')[0] in %r)]))"
             % (SLOW,))
    out = subprocess.run([sys.executable, "-c", probe], stdout=subprocess.PIPE, env=env, check=True).stdout.decode()
    assert json.loads(out.strip().splitlines()[-1]) == [["python", "structlog", "tenacity", "xsguard"], []]


def test_lsevtchn_found_in_a_plain_candidate_imports_no_glob(tmp_path):
    """``[dom0] lsevtchn = auto`` (the shipped default), lsevtchn in a candidate without a wildcard: found
    with glob made unimportable; a wildcard candidate is searched with glob."""
    plain, versioned = tmp_path / "libexec-xen-bin", tmp_path / "xen-4.17" / "bin"
    for directory in (plain, versioned):
        directory.mkdir(parents=True)
        (directory / "lsevtchn").write_text("#!/bin/sh\n")
        (directory / "lsevtchn").chmod(0o755)
    probe = ("import sys\nsys.modules['glob'] = None  # importing it raises ImportError\n"
             "from xsguard.probes import find_lsevtchn\nprint(find_lsevtchn('auto', sys.argv[1:]))")

    def find(*candidates):
        proc = subprocess.run([sys.executable, "-c", probe] + [str(c) for c in candidates], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        return proc.returncode, proc.stdout.decode().strip(), proc.stderr.decode()

    assert find(tmp_path / "absent", plain, tmp_path / "xen-*" / "bin")[:2] == (0, str(plain / "lsevtchn"))
    code, _, err = find(tmp_path / "absent", tmp_path / "xen-*" / "bin")
    assert code == 1 and "import of glob halted" in err
