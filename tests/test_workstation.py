"""Every command from a workstation (--xapi): answered by the hosts' own xsguard, never by local files;
xsguard vms and capacity; credentials, certificates and URLs; UTF-8 whatever the locale."""

import json
import os
import subprocess
import sys
import threading
from typing import Any, Dict
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from tests.conftest import run_xsguard
from tests.pool import TEN, decision_log, failure, host_with_free, make_vm, running, small_host

BIG: Dict[str, Any] = dict(vcpus=32, hvm=True, disks=4, nics=2)  # more than a small host has


def refused_on(api, name, host):
    failure(api.VM.start_on, make_vm(api, name, affinity=host, **BIG), host, False, False)


# denials, status, audit, check, evacuate --ha


def test_denials_from_a_workstation_gathers_every_hosts_refusals(api, workstation, tmp_path):
    """denials --xapi: each host's refusals from its own log (newest first), --host for one, never the
    workstation's own log; a dead URL fails (exit 4) instead of saying "no refusals"."""
    a = host_with_free(api, "xs-a", 20)
    b = host_with_free(api, "xs-b", 20)
    refused_on(api, "big-a", a)
    refused_on(api, "big-b", b)
    decision_log(api, a, 1)
    decision_log(api, b, 1)
    (tmp_path / "decisions.log").write_text(json.dumps(
        {"event": "start_refused", "time": "2099-01-01T00:00:00Z", "vm_name": "local-only", "checks": []}) + "\n")
    code, out, err = workstation("denials", "--json")
    assert (code, err) == (0, "")
    assert [(r["vm_name"], r["host_name"]) for r in json.loads(out)] == [("big-b", "xs-b"), ("big-a", "xs-a")]
    code, out, _ = workstation("denials", "--host", "xs-a", "--json")
    assert code == 0 and [r["vm_name"] for r in json.loads(out)] == ["big-a"]
    code, out, _ = workstation("denials", "--summary", "--json")
    assert code == 0 and sorted((g["vm_name"], g["count"]) for g in json.loads(out)) == [("big-a", 1), ("big-b", 1)]
    code, out, err = workstation("--xapi", "http://127.0.0.1:9/", "denials")
    assert code == 4 and out == "" and "xapi is not answering on http://127.0.0.1:9/" in err


def test_denials_say_which_host_did_not_answer(api, workstation):
    """A host whose xsguard does not answer: the others' refusals shown, the silent one named, exit 4."""
    a = host_with_free(api, "xs-a", 20)
    b = host_with_free(api, "xs-b", 20)
    refused_on(api, "big-a", a)
    decision_log(api, a, 1)
    os.remove(os.path.join(api.sim.get_host_root(b), "etc", "xapi.d", "plugins", "xsguard"))
    code, out, err = workstation("denials", "--json")
    assert code == 4 and [r["vm_name"] for r in json.loads(out)] == ["big-a"]
    assert err.startswith("xsguard: host 'xs-b' did not answer: ")


def test_status_and_audit_from_a_workstation_ask_the_hosts_plugin(api, workstation):
    """status and audit with no dom0 here: the host's own answer (its plugin), the same figures; with
    several hosts, --host names the one (exit 2 without it, naming them)."""
    a = host_with_free(api, "xs-a", 100)
    running(api, "web-1", a)
    code, out, err = workstation("status", "--json")
    status = json.loads(out)
    assert (code, err) == (0, "")
    assert (status["host_name"], status["port_limit"], status["ports_used"], status["ports_free"]) == (
        "xs-a", 148, 50, 90)
    code, out, _ = workstation("audit", "--json")
    audit = json.loads(out)
    assert code == 0 and [(v["vm_name"], v["predicted"], v["held"], v["verdict"]) for v in audit["vms"]] == [
        ("web-1", 10, 10, "exact")]
    host_with_free(api, "xs-b", 30)
    code, out, err = workstation("status")
    assert (code, out) == (2, "") and err == "xsguard: the pool has 2 hosts: name one with --host (xs-a, xs-b)\n"
    code, out, _ = workstation("status", "--host", "xs-b", "--json")
    assert code == 0 and (json.loads(out)["host_name"], json.loads(out)["ports_free"]) == ("xs-b", 30)
    code, out, _ = workstation("audit", "--host", "xs-a")
    assert code == 0 and out.startswith("host xs-a: 1 exact, 0 under, 0 over, 0 pending\n")


def test_check_json_claims_no_record(api, workstation):
    """check records nothing, and its JSON does not say otherwise (``recorded`` is admit's key)."""
    a = host_with_free(api, "xs-a", 100)
    make_vm(api, "later", affinity=a, **TEN)
    code, out, _ = workstation("check", "later", "--json")
    assert code == 0 and json.loads(out)["verdict"] == "admit" and "recorded" not in json.loads(out)
    assert json.loads(api.host.call_plugin(a, "xsguard", "admit", {"vm_uuid": json.loads(out)["vm_uuid"]}
                                           ))["recorded"] is True


def test_evacuate_ha_says_when_there_is_nothing_to_plan(api, workstation):
    """evacuate --ha with no HA-protected VM anywhere: says there is nothing to plan (not "they fit")."""
    a = host_with_free(api, "xs-a", 100)
    host_with_free(api, "xs-b", 100)
    running(api, "not-ha", a)
    code, out, _ = workstation("evacuate", "--ha")
    assert code == 0
    assert out == "no HA-protected VM (ha_restart_priority = restart) runs on any host: nothing to plan\n"


# xsguard vms


def test_vms_lists_need_host_and_state_from_each_hosts_figures(api, workstation):
    """vms: every VM (templates, snapshots, dom0 left out) with its state, its host (where it runs, else its
    affinity) and its need there as that host computes it; the same in dom0 over the local socket."""
    a = host_with_free(api, "xs-a", 100)
    b = small_host(api, "xs-b", port_limit=300, vcpus=1)  # 1 dom0 vCPU: one netback queue per VIF
    running(api, "web", a)
    make_vm(api, "later", affinity=b, **TEN)
    make_vm(api, "tmpl", is_a_template=True, **TEN)
    expected = [("later", "Halted", "xs-b", False, 8), ("web", "Running", "xs-a", True, 10)]
    code, out, err = workstation("vms", "--json")
    assert (code, err) == (0, "")
    assert [(v["vm_name"], v["power_state"], v["host_name"], v["resident"], v["need"])
            for v in json.loads(out)["vms"]] == expected
    conf = os.path.join(api.sim.get_host_root(a), "etc", "xsguard", "xsguard.conf")
    code, out, _ = run_xsguard(["--config", conf, "vms"])
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["vm", "uuid", "state", "host", "need"]
    assert [line.split()[:1] + line.split()[2:] for line in lines[1:3]] == [
        ["later", "Halted", "(xs-b)", "8"], ["web", "Running", "xs-a", "10"]]


# xsguard capacity


def test_capacity_per_host_and_in_total(api, workstation):
    """capacity --like: each host's count of further VMs of that shape (its free ports // the need),
    the ceiling that stops them, the remedies, and the pool's total; JSON exactly as documented."""
    a = host_with_free(api, "xs-a", 100)
    host_with_free(api, "xs-b", 35)
    running(api, "web", a)  # 10 of xs-a's 100 taken
    code, out, err = workstation("capacity", "--like", "web", "--json")
    data = json.loads(out)
    assert (code, err) == (0, "")
    assert set(data) == {"shape", "need", "hosts", "total"}
    assert data["shape"] == {"vcpus": 2, "disks": 1, "vifs": 1, "hvm": True, "uefi": False}
    assert data["need"] == 10
    assert [set(h) for h in data["hosts"]] == [{"host_uuid", "host_name", "fits", "ceiling", "remedies"}] * 2
    assert [(h["host_name"], h["fits"], h["ceiling"]) for h in data["hosts"]] == [
        ("xs-a", 9, "xen_ports"), ("xs-b", 3, "xen_ports")]
    assert data["total"] == 12
    margin = {h["host_name"]: next(r for r in h["remedies"] if r["remedy"] == "margin") for h in data["hosts"]}
    assert (margin["xs-a"]["fits"], margin["xs-b"]["fits"]) == (9, 4)  # 98 // 10 and 43 // 10
    fifo = next(r for r in data["hosts"][0]["remedies"] if r["remedy"] == "fifo")
    assert fifo["ceiling"] == "linux_irqs" and fifo["fits"] > 1000
    code, out, _ = workstation("capacity", "--like", "web", "--host", "xs-b")
    assert code == 0 and "total: 3 more" in out


def test_capacity_of_a_shape_and_the_dom0_vcpus_remedy(api, workstation):
    """capacity --vcpus --disks --vifs --hvm: the need of that shape on each host; where dom0's vCPUs cap
    the netback queues, what more dom0 vCPUs would give (more queues, fewer VMs)."""
    host_with_free(api, "xs-a", 160)  # a 4-vCPU dom0
    code, out, _ = workstation("capacity", "--vcpus", "8", "--disks", "1", "--vifs", "1", "--hvm", "--json")
    host = json.loads(out)["hosts"][0]
    # 1 xenstore + 1 console + 9 QEMU (8 vCPUs + 1) + 1 disk + a VIF of 4 queues x 2 = 20; 160 // 20 = 8
    assert code == 0 and (json.loads(out)["need"], host["fits"]) == (20, 8)
    vcpus = next(r for r in host["remedies"] if r["remedy"] == "dom0_vcpus")
    assert (vcpus["need"], vcpus["fits"]) == (28, 5)  # 8 queues x 2 = 16 for the VIF; 160 // 28 = 5
    assert vcpus["what"].startswith("8 dom0 vCPUs")


def test_capacity_bad_shape_is_a_usage_error(workstation):
    """A shape that cannot be: exit 2 and one line, nothing asked."""
    for args, said in ((["--uefi"], "uefi is an HVM guest's firmware"), (["--vcpus", "0"], "vcpus must be between"),
                       (["--like", "web", "--vcpus", "2"], "--like takes the shape of a VM")):
        code, out, err = workstation("capacity", *args)
        assert (code, out, err.count("\n")) == (2, "", 1) and said in err, args


def test_capacity_on_the_2013_hosts_matches_the_seed(workstation_config):
    """The 2013 hosts (make demo-2013): an empty 6.2 host takes 570 more such HVM VMs, a 6.1 host 153."""
    from xsguard.sim.scenario import load_file
    from xsguard.sim.seed2013 import SCENARIO
    from xsguard.sim.server import Simulator

    with Simulator() as sim:
        load_file(sim.pool, SCENARIO)
        code, out, err = run_xsguard(["--config", workstation_config, "--xapi", sim.url, "capacity", "--like",
                                      "hvm62-01", "--json"])
    data = json.loads(out)
    assert (code, err) == (0, "")
    assert {h["host_name"]: (h["fits"], h["ceiling"]) for h in data["hosts"]} == {
        "xs62": (570, "xen_ports"), "xs61": (153, "xen_ports")}
    assert data["total"] == 723


# credentials, certificates, URLs


def test_help_says_how_to_log_in_and_trust_the_pool(workstation_config):
    """--help names the credential variables and --ca-file."""
    code, out, _ = run_xsguard(["--help"])
    assert code == 0
    for word in ("XSGUARD_XAPI_USER", "XSGUARD_XAPI_PASSWORD", "--ca-file", "self-signed"):
        assert word in out, word


@pytest.fixture
def refusing_xapi():
    """A stand-in xapi that refuses every login as xapi does, and keeps what it was sent."""
    seen = []
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)

    def login(user, password, version, originator):
        seen.append((user, password))
        return {"Status": "Failure", "ErrorDescription": ["SESSION_AUTHENTICATION_FAILED", user,
                                                          "Authentication failure"]}

    server.register_function(login, "session.login_with_password")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_a_refused_login_names_the_variables(refusing_xapi, workstation_config):
    """The authentication error names XSGUARD_XAPI_USER and XSGUARD_XAPI_PASSWORD; credentials written in
    the URL are used and never printed; over plain http a password draws a warning."""
    where, seen = refusing_xapi
    env = dict(os.environ, XSGUARD_XAPI_USER="ops", XSGUARD_XAPI_PASSWORD="hunter2")
    code, _, err = run_xsguard(["--config", workstation_config, "--xapi", "http://%s/" % where, "pool"], env=env)
    assert code == 4 and "refused the login of user 'ops'" in err
    assert "$XSGUARD_XAPI_USER" in err and "$XSGUARD_XAPI_PASSWORD" in err and "hunter2" not in err
    assert "warning: http://%s/ is plain http: the password goes over the network in clear text" % where in err
    code, _, err = run_xsguard(["--config", workstation_config, "--xapi", "http://root:s3cret@%s/" % where, "pool"])
    assert code == 4 and "s3cret" not in err and "http://root:***@%s/" % where in err
    assert seen == [("ops", "hunter2"), ("root", "s3cret")]


def test_a_password_in_the_url_is_never_printed(workstation_config):
    """A dead https URL with user and password: the "not answering" message shows neither the password."""
    code, out, err = run_xsguard(["--config", workstation_config, "--xapi", "https://root:secret@127.0.0.1:9/",
                                  "pool"])
    assert code == 4 and "secret" not in out + err and "https://root:***@127.0.0.1:9/" in err


def test_an_url_without_scheme_says_what_to_write(workstation_config):
    """--xapi 127.0.0.1:34713: exit 2 and the two URLs it could mean, not a config error."""
    code, out, err = run_xsguard(["--config", workstation_config, "--xapi", "127.0.0.1:34713", "pool"])
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "https://127.0.0.1:34713/" in err and "http://127.0.0.1:34713/" in err and "overrides" not in err


def test_a_self_signed_certificate_is_named_and_trusted_with_ca_file(https_url, api, workstation_config, tmp_path):
    """A pool's self-signed certificate (made with openssl, served over TLS on 127.0.0.1): the error says
    it is not trusted and how to trust it, at once (not retried); --ca-file or [xapi] ca_file trusts it."""
    url, cert = https_url
    host_with_free(api, "xs-a", 100)
    env = dict(os.environ, SSL_CERT_FILE=os.devnull)  # no system authority vouches for it
    code, out, err = run_xsguard(["--config", workstation_config, "--xapi", url, "pool"], env=env)
    assert (code, out) == (4, "") and err.count("\n") == 1
    assert err.startswith("xsguard: xapi's certificate at %s is not trusted (" % url)
    assert "--ca-file" in err and "Traceback" not in err
    code, out, err = run_xsguard(["--config", workstation_config, "--xapi", url, "--ca-file", cert, "pool", "--json"],
                                 env=env)
    assert (code, err) == (0, "") and [h["host_name"] for h in json.loads(out)["hosts"]] == ["xs-a"]
    conf = tmp_path / "trusting.conf"
    with open(workstation_config) as handle:
        conf.write_text(handle.read() + "\n[xapi]\nca_file = %s\n" % cert)
    code, out, _ = run_xsguard(["--config", str(conf), "--xapi", url, "pool", "--json"], env=env)
    assert code == 0 and [h["host_name"] for h in json.loads(out)["hosts"]] == ["xs-a"]


def test_version_and_help_without_xenapi():
    """Without XenAPI importable (plain Xen with xl): --version and --help work; a command that needs
    xapi says it needs XenAPI, in one line."""
    program = "import sys; sys.modules['XenAPI'] = None; from xsguard.cli import main; sys.exit(main(sys.argv[1:]))"
    for args, code, said in ((["--version"], 0, "xsguard "), (["--help"], 0, "XSGUARD_XAPI_USER"),
                             (["pool"], 4, "xsguard: pool needs XenAPI")):
        proc = subprocess.run([sys.executable, "-c", program] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        text = (proc.stdout + proc.stderr).decode()
        assert proc.returncode == code and said in text and "Traceback" not in text, args


# UTF-8 whatever the locale


def test_tables_are_utf8_whatever_the_locale(api, sim, workstation_config, dom0_python):
    """A VM named "café-01", in argv and in the tables, under a C locale on dom0's Python 3.6 (make
    test-py36), else with stdout in strict ASCII as 3.6 has it: UTF-8 in and out, exit 0."""
    a = host_with_free(api, "xs-a", 100)
    running(api, "caf\u00e9-01", a)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}
    python = dom0_python or sys.executable
    if dom0_python is None:
        env["PYTHONIOENCODING"] = "ascii:strict"  # what 3.6 does in the C locale
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    for args, said in ((["vms"], "caf\u00e9-01"), (["status", "--host", "xs-a"], "caf\u00e9-01"),
                       (["capacity", "--like", "caf\u00e9-01"], "VMs of 2 vCPUs, 1 disk, 1 VIF, HVM (BIOS)")):
        proc = subprocess.run([python, "-m", "xsguard", "--config", workstation_config, "--xapi", sim.url] + args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.returncode == 0, (args, proc.stderr.decode("utf-8", "replace"))
        assert said in proc.stdout.decode("utf-8"), args
