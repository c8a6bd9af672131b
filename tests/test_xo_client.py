"""Xen Orchestra's own XenAPI client (npm ``xen-api``, pinned in tests/xo) against ``xsguard simulate``,
unshimmed, over JSON-RPC and over XML-RPC: it connects, reads the pool from its event-fed cache,
starts VMs with VM.start and Async.VM.start_on, and sees xsguard's refusal message arrive.

Needs node and the client installed (``npm ci`` in tests/xo, as .ci/run does); skipped otherwise."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

XO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "xo")
SCENARIO = {
    "hosts": [{"name": "xs-a", "dom0": {"vcpus": 4, "abi": "2-level", "port_limit": 200},
               "xsguard": {"dom0.port_limit": "200", "policy.margin": "8"}}],
    "vms": [{"name": "small", "vcpus": 1, "disks": 1, "nics": 1},
            {"name": "placed", "vcpus": 2, "disks": 1, "nics": 1},
            {"name": "huge", "vcpus": 8, "disks": 40, "nics": 20}],
}

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not os.path.isdir(os.path.join(XO, "node_modules", "xen-api")),
    reason="node or Xen Orchestra's client (npm ci in tests/xo) is not installed here")


def run_client(tmp_path, transport):
    """Serve the scenario with ``xsguard simulate``, run the client over ``transport``; what it saw."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "xsguard", "simulate", "--port", "0", "--scenario", str(scenario)],
                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    with proc:  # its pipe closed at the end
        try:
            url = proc.stdout.readline().decode().split()[-1]
            client = subprocess.run(["node", os.path.join(XO, "xo_client.mjs"), url, transport], cwd=XO,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
            assert client.returncode == 0, client.stderr.decode()
            return json.loads(client.stdout.decode().splitlines()[-1])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


@pytest.mark.parametrize("transport", ["json-rpc", "xml-rpc"])
def test_xen_orchestra_client_starts_vms_and_sees_the_refusal(tmp_path, transport):
    """Over each transport XO's client lists the pool, starts one VM with VM.start and one with
    Async.VM.start_on (its cache, fed by event.from, shows them running on the host), gets the
    refusal of the third as XAPI_HOOK_FAILED, and finds XSGUARD_START_REFUSED for that VM among the
    messages its events brought."""
    seen = run_client(tmp_path, transport)
    assert "error" not in seen, seen.get("error")
    assert seen["hosts"] == ["xs-a"]
    assert seen["vms"] == ["huge", "placed", "small"]
    assert seen["small"] is True and seen["placed"] is True
    assert seen["refused"]["code"] == "XAPI_HOOK_FAILED"
    assert seen["refused"]["params"][:2] == ["vm-pre-start/50xsguard", "none"]
    assert seen["message"]["obj_uuid"] == seen["message"]["huge"]
    assert seen["message"]["body"].startswith("xsguard refused to start VM 'huge'")
