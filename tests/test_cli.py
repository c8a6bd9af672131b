"""The xsguard command, run as a process on a simulated host's dom0."""

import glob
import json
import os
import subprocess
import sys

from tests.pool import connect, decision_log, failure, make_vm, small_host, wait_for


def xsguard(api, host, *args, env=None):
    conf = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
    proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", conf] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_status_json_keys(api):
    """status --json has the documented keys, with the host's real figures."""
    host = small_host(api, port_limit=300, vcpus=4)
    code, out, _ = xsguard(api, host, "status", "--json")
    s = json.loads(out)
    assert code == 0
    for key in ("port_limit", "ports_used", "ports_free", "irq_limit", "irqs_used", "by_remote_domain", "leaked"):
        assert key in s
    assert (s["port_limit"], s["ports_used"]) == (300, 40)


def test_status_table(api):
    """The human status is a short aligned table naming both ceilings and their sources."""
    host = small_host(api, port_limit=300, vcpus=4)
    code, out, _ = xsguard(api, host, "status")
    assert code == 0
    assert "Xen ports   300    40    0         8       252    configured ([dom0] port_limit)" in out
    assert "Linux IRQs  41220" in out and "NR_IRQS 33024 + 8196 (" in out and "kern.log" in out


def test_need_by_name_and_uuid(api):
    """need takes a name or a uuid and prints the breakdown."""
    host = small_host(api)
    vm = make_vm(api, "db-01", vcpus=4, hvm=True, firmware="uefi", disks=2, nics=1, windows=True)
    code, out, _ = xsguard(api, host, "need", "db-01", "--json")
    assert code == 0 and json.loads(out)["total"] == 2 + 5 + 4 + 2 + 4 * 2 + 1
    code, out, _ = xsguard(api, host, "need", api.VM.get_uuid(vm))
    assert "total" in out and "varstored" in out


def test_check_exit_codes(api):
    """check exits 0 when admitted, 3 when refused, 4 when the check itself failed."""
    host = small_host(api, port_limit=100, vcpus=4)
    make_vm(api, "small")
    make_vm(api, "huge", vcpus=32, hvm=True, disks=4, nics=2)
    code, out, _ = xsguard(api, host, "check", "small", "--json")
    assert code == 0 and json.loads(out)["verdict"] == "admit"
    code, out, _ = xsguard(api, host, "check", "huge", "--json")
    c = json.loads(out)
    assert code == 3 and c["verdict"] == "refuse"
    for key in ("need", "used", "promised", "limit", "margin", "free", "ceiling", "message"):
        assert key in c
    code, _, err = xsguard(api, host, "check", "nosuchvm")
    assert code == 4 and "no VM has uuid or name 'nosuchvm'" in err


def test_same_name_twice_asks_for_the_uuid(api):
    """Two VMs with one name: the command asks for the uuid."""
    host = small_host(api)
    make_vm(api, "twin")
    make_vm(api, "twin")
    code, _, err = xsguard(api, host, "need", "twin")
    assert code == 4 and "2 VMs are named 'twin': give the uuid" in err


def test_status_without_xapi(api):
    """xapi down: status still shows dom0's figures and says xapi did not answer."""
    host = small_host(api, config={"xapi.url": "http://127.0.0.1:9/", "policy.deadline": "1"})
    code, out, _ = xsguard(api, host, "status", "--json")
    s = json.loads(out)
    assert code == 0 and s["ports_used"] == 40 and s["leaked"] is None
    assert any("xapi is not answering" in n for n in s["notes"])


def test_denials_command(api):
    """denials lists refused starts, --summary groups them, --json gives the records."""
    host = small_host(api, port_limit=100, vcpus=4)
    for name in ("a", "a", "b"):
        vms = api.VM.get_by_name_label(name) or [make_vm(api, name, vcpus=32, hvm=True, disks=4, nics=2)]
        failure(api.VM.start, vms[0], False, False)
    assert [r["event"] for r in decision_log(api, host, 3)] == ["start_refused"] * 3  # the writers done
    code, out, _ = xsguard(api, host, "denials", "--json")
    assert code == 0 and [r["vm_name"] for r in json.loads(out)] == ["b", "a", "a"]
    code, out, _ = xsguard(api, host, "denials", "--summary", "--json")
    groups = json.loads(out)
    assert [(g["vm_name"], g["count"], g["ceilings"]) for g in groups] == [("a", 2, {"xen_ports": 2}),
                                                                         ("b", 1, {"xen_ports": 1})]
    code, out, _ = xsguard(api, host, "denials", "--vm", "b")
    assert code == 0 and len(out.strip().splitlines()) == 2


def test_bad_config_is_a_clear_error(tmp_path):
    """A bad config value: exit 4 and the key named."""
    conf = tmp_path / "x.conf"
    conf.write_text("[policy]\nmargin = many\n")
    proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", str(conf), "status"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.returncode == 4 and b"bad value for [policy] margin" in proc.stderr


def test_simulate_serves_until_sigterm(tmp_path):
    """xsguard simulate prints its URL first, serves the scenario's pool, stops on SIGTERM."""
    import signal


    scenario = tmp_path / "pool.json"
    scenario.write_text(json.dumps({"hosts": [{"name": "xs-a", "dom0": {"vcpus": 8}}],
                                    "vms": [{"name": "web", "count": 3, "affinity": "xs-a"}]}))
    proc = subprocess.Popen([sys.executable, "-m", "xsguard", "simulate", "--scenario", str(scenario)],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline().decode()
        assert first.startswith("XenAPI at http://127.0.0.1:")
        session = connect(first.split()[-1])
        assert sorted(r["name_label"] for r in session.xenapi.VM.get_all_records_where(
            'field "is_control_domain" = "false"').values()) == ["web-01", "web-02", "web-03"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        ended(proc)


def simulate(tmp_path, *args):
    """``xsguard simulate`` as a process whose temporary files go under ``tmp_path``; its URL."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "xsguard", "simulate"] + list(args), stdout=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()
    assert first.startswith("XenAPI at http://127.0.0.1:")
    return proc, first.split()[-1]


def ended(proc):
    """The process killed if it still runs, reaped, its pipes closed."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def lines_in(pattern):
    total = 0
    for path in glob.glob(pattern):
        with open(path) as handle:
            total += sum(1 for _ in handle)
    return total


def test_simulate_serves_a_default_pool_and_removes_its_files(tmp_path):
    """No scenario: two hosts, VMs running on each, one halted; SIGTERM leaves no xsguard-sim-* behind."""
    import signal

    proc, url = simulate(tmp_path)
    try:
        assert [n for n in os.listdir(str(tmp_path)) if n.startswith("xsguard-sim-")] != []
        api = connect(url).xenapi
        hosts = {ref: r["name_label"] for ref, r in api.host.get_all_records().items()}
        assert sorted(hosts.values()) == ["xs-a", "xs-b"]
        vms = [r for r in api.VM.get_all_records().values() if not r["is_control_domain"]]
        running = sorted((r["name_label"], hosts[r["resident_on"]]) for r in vms if r["power_state"] == "Running")
        assert running == [("sql-01", "xs-b"), ("sql-02", "xs-b"), ("web-01", "xs-a"), ("web-02", "xs-a"),
                           ("web-03", "xs-a")]
        assert [r["name_label"] for r in vms if r["power_state"] == "Halted"] == ["spare"]
        logs = str(tmp_path / "xsguard-sim-*" / "hosts" / "*" / "var" / "log" / "xsguard" / "decisions.log")
        wait_for(lambda: lines_in(logs) == 5)  # the hooks' detached writers are done with the directory
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert [n for n in os.listdir(str(tmp_path)) if n.startswith("xsguard-sim-")] == []
    finally:
        ended(proc)


def test_simulate_says_which_running_vms_did_not_start(tmp_path):
    """A scenario VM meant to run that xsguard refuses: said on stderr, the rest of the pool served."""
    import signal

    scenario = tmp_path / "pool.json"
    scenario.write_text(json.dumps({
        "hosts": [{"name": "xs-a", "dom0": {"vcpus": 4, "abi": "2-level", "port_limit": 100},
                   "xsguard": {"dom0.port_limit": "100", "policy.margin": "8"}}],
        "vms": [{"name": "big", "vcpus": 32, "hvm": True, "disks": 4, "nics": 2, "affinity": "xs-a", "running": True},
                {"name": "small", "affinity": "xs-a", "running": True}]}))
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "xsguard", "simulate", "--scenario", str(scenario)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        api = connect(proc.stdout.readline().decode().split()[-1]).xenapi
        states = {r["name_label"]: r["power_state"] for r in api.VM.get_all_records().values()
                  if not r["is_control_domain"]}
        assert states == {"big": "Halted", "small": "Running"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert err.decode().startswith("xsguard simulate: VM 'big' did not start: XAPI_HOOK_FAILED "
                                       "vm-pre-start/50xsguard none xsguard refused to start VM 'big'")
    finally:
        ended(proc)


def test_simulate_empty_serves_no_host(tmp_path):
    """--empty: a pool with no host, to build through the API; SIGINT stops it and cleans up too."""
    import signal

    proc, url = simulate(tmp_path, "--empty")
    try:
        assert connect(url).xenapi.host.get_all() == []
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert [n for n in os.listdir(str(tmp_path)) if n.startswith("xsguard-sim-")] == []
    finally:
        ended(proc)


def test_demo_and_simulate_say_why_not_where_the_simulator_is_left_out():
    """dom0's package leaves xsguard.sim out: demo and simulate exit 2 with one line saying so."""
    for command in ("demo", "simulate"):
        code = "import sys; sys.modules['xsguard.sim'] = None; from xsguard.cli import main; sys.exit(main([%r]))" % (
            command)
        proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and proc.stdout == b""
        assert err.count("\n") == 1 and err.startswith("xsguard: the simulated pool is not installed here")
        assert "run `xsguard %s` where xsguard was installed with pip" % command in err


def test_status_on_a_xen_dom0_without_xapi(api):
    """No /etc/xensource-inventory (plain Xen with xl): dom0's figures, xapi's side said to be unknown,
    and no attempt to reach xapi."""
    host = small_host(api, port_limit=300, vcpus=4, config={"xapi.url": "http://127.0.0.1:9/"})
    os.remove(os.path.join(api.sim.get_host_root(host), "etc", "xensource-inventory"))
    code, out, err = xsguard(api, host, "status", "--json")
    s = json.loads(out)
    assert (code, err) == (0, "")
    assert (s["host_uuid"], s["port_limit"], s["ports_used"], s["ports_free"], s["leaked"]) == ("", 300, 40, 252, None)
    assert len(s["notes"]) == 1 and "a Xen dom0 without xapi (xl?); xapi's side is unknown" in s["notes"][0]
    code, out, _ = xsguard(api, host, "status")
    assert code == 0 and out.startswith("host ? (uuid unknown)\n")


def test_ceilings_outlive_the_rotated_kernel_log(api):
    """The boot lines leave kern.log at rotation: what they said is kept until dom0 reboots."""
    host = api.sim.add_host("xs-a", {"vcpus": "4", "abi": "2-level"})
    root = api.sim.get_host_root(host)
    code, out, _ = xsguard(api, host, "status", "--json")
    first = json.loads(out)
    log = os.path.join(root, "var", "log", "kern.log")
    assert (first["port_limit"], first["port_limit_source"]) == (4095, "2-level ABI (%s, boot line)" % log)
    assert (first["irq_limit"], first["irq_limit_source"]) == (41220, "NR_IRQS 33024 + 8196 (%s, boot line)" % log)
    open(os.path.join(root, "var", "log", "kern.log"), "w").close()  # logrotate
    open(os.path.join(root, "dev", "kmsg"), "w").close()  # the ring buffer wrapped
    kept = json.loads(xsguard(api, host, "status", "--json")[1])
    assert (kept["port_limit"], kept["irq_limit"]) == (4095, 41220)
    assert kept["port_limit_source"] == "2-level ABI (%s, boot line, kept since this boot's first reading)" % log
    with open(os.path.join(root, "proc", "sys", "kernel", "random", "boot_id"), "w") as handle:
        handle.write("00000000-0000-4000-8000-000000000001\n")  # dom0 rebooted
    rebooted = json.loads(xsguard(api, host, "status", "--json")[1])
    assert rebooted["port_limit"] == 4095 and "inferred" in rebooted["port_limit_source"]
    assert (rebooted["irq_limit"], rebooted["irq_limit_source"]) == (None, "unknown: set [dom0] irq_limit")


def _plant_log_line(api, host, line):
    path = os.path.join(api.sim.get_host_root(host), "var", "log", "xsguard", "decisions.log")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(line + "\n")


def test_denials_since_too_far_back_is_a_usage_error(api):
    """A 400-digit --since is a usage error naming since, not an OverflowError traceback."""
    host = small_host(api)
    code, out, err = xsguard(api, host, "denials", "--since", "9" * 400 + "d")
    assert code == 2 and "reaches back too far" in err and "Traceback" not in err


def test_simulate_port_out_of_range_is_a_usage_error():
    """--port 99999 is refused by the parser before anything binds."""
    proc = subprocess.run([sys.executable, "-m", "xsguard", "simulate", "--port", "99999"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert proc.returncode == 2
    assert b"port must be between 0 and 65535, not 99999" in proc.stderr and b"Traceback" not in proc.stderr


def test_a_refusal_line_with_a_numeric_time_is_counted_corrupt(api):
    """{"event": "start_refused", "time": 5} is skipped and counted, the other records still listed."""
    host = small_host(api, port_limit=100, vcpus=4)
    vm = make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2)
    failure(api.VM.start, vm, False, False)
    assert [r["event"] for r in decision_log(api, host, 1)] == ["start_refused"]  # its detached writer done
    _plant_log_line(api, host, '{"event": "start_refused", "time": 5}')
    _plant_log_line(api, host, '{"event": "start_refused", "time": "2026-11-26T08:00:00Z", "checks": 3}')
    code, out, err = xsguard(api, host, "denials", "--json")
    assert code == 0 and [r["vm_name"] for r in json.loads(out)] == ["big"]
    assert "skipped 2 corrupt line(s)" in err and "Traceback" not in err


HOSTILE = "web\n2026-11-26 08:00:00  forged  xs-a  1  99  xen_ports\x9b2J\x9b31m\u202eevil"


def _raw_controls(text):
    return [ch for ch in text if ch in "\x1b\x9b\u202e"]


def test_hostile_vm_names_reach_the_terminal_clean(api):
    """A name with a newline, U+009B and U+202E cannot forge a line in denials, status or need."""
    host = small_host(api, port_limit=100, vcpus=4)
    small = make_vm(api, HOSTILE, vcpus=1)
    api.VM.start(small, False, False)
    big = make_vm(api, HOSTILE + "-big", vcpus=32, hvm=True, disks=4, nics=2)
    failure(api.VM.start, big, False, False)
    assert [r["event"] for r in decision_log(api, host, 2)] == ["start_admitted", "start_refused"]  # written
    for args in (("denials",), ("status",), ("need", api.VM.get_uuid(small)), ("check", api.VM.get_uuid(big))):
        code, out, _ = xsguard(api, host, *args)
        assert code in (0, 3), args
        assert _raw_controls(out) == [], args
        assert "forged" not in "".join(line[:12] for line in out.splitlines()), args
        assert "web\\u000a2026-11-26 08:00:00  forged" in out, args  # one escaper: the hook's message too


def test_status_table_counts_refusals(api):
    """The human status says how many starts were refused and let through unchecked."""
    host = small_host(api, port_limit=100, vcpus=4)
    failure(api.VM.start, make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2), False, False)
    assert [r["event"] for r in decision_log(api, host, 1)] == ["start_refused"]  # counted by its writer
    code, out, _ = xsguard(api, host, "status")
    assert code == 0
    assert ("refused here (starts, migrations, resumes): 1; let through unchecked (xsguard failed, "
            "on_error = allow): 0\n") in out
