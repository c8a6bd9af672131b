"""The simulated pool answers and fails as xapi and xenopsd do, through the real XenAPI client."""

import os
import textwrap
import xmlrpc.client

import pytest
import XenAPI

from tests.pool import failure, make_vm, wait_for


def install_hook(api, host, name, body):
    """Put a script in the host's /etc/xapi.d/vm-pre-start, as an installer would."""
    root = api.sim.get_host_root(host)
    path = os.path.join(root, "etc", "xapi.d", "vm-pre-start", name)
    with open(path, "w") as handle:
        handle.write(textwrap.dedent(body).lstrip())
    os.chmod(path, 0o755)
    return root


def test_pool_built_through_the_api(bare_api):
    """Hosts, VMs and devices made by API calls read back with xapi's shapes."""
    host = bare_api.sim.add_host("xs-a", {"vcpus": "8"})
    vm = make_vm(bare_api, "web", vcpus=2, disks=2, nics=1)
    rec = bare_api.VM.get_record(vm)
    assert rec["VCPUs_max"] == "2" and rec["power_state"] == "Halted" and rec["domid"] == "-1"
    assert len(rec["VBDs"]) == 2 and len(rec["VIFs"]) == 1
    assert bare_api.VM.get_by_uuid(rec["uuid"]) == vm
    assert bare_api.VM.get_by_name_label("web") == [vm]
    assert rec["resident_on"] == "OpaqueRef:NULL" and vm.startswith("OpaqueRef:")
    ctrl = bare_api.host.get_control_domain(host)
    assert bare_api.VM.get_is_control_domain(ctrl) is True
    assert bare_api.VM.get_VCPUs_max(ctrl) == "8"


def test_where_expressions(bare_api):
    """``field "x" = "y"`` with and, or, not and parentheses; name__label for name_label."""
    bare_api.sim.add_host("xs-a", {})
    a = make_vm(bare_api, "a", vcpus=2)
    b = make_vm(bare_api, "b", vcpus=4)
    where = bare_api.VM.get_all_records_where
    assert set(where('field "name__label" = "a" or field "name__label" = "b"')) == {a, b}
    assert set(where('field "VCPUs_max" = "4" and field "is_control_domain" = "false"')) == {b}
    assert set(where('not (field "name__label" = "a") and field "is_control_domain" = "false"')) == {b}
    assert failure(where, 'field "x" = ')[0] == "INVALID_VALUE"


def test_xapi_errors(bare_api, bare_sim):
    """Unknown handles, uuids and methods, and wrong arities give xapi's error codes."""
    bare_api.sim.add_host("xs-a", {})
    assert failure(bare_api.VM.get_record, "OpaqueRef:nope") == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    assert failure(bare_api.VM.get_by_uuid, "nope") == ["UUID_INVALID", "VM", "nope"]
    assert failure(bare_api.VM.frobnicate)[0] == "MESSAGE_METHOD_UNKNOWN"
    assert failure(bare_api.VM.set_power_state, "x", "Running")[0] == "MESSAGE_METHOD_UNKNOWN"
    assert failure(bare_api.VM.get_record)[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    with xmlrpc.client.ServerProxy(bare_sim.url) as raw:
        assert raw.VM.get_all("OpaqueRef:bogus") == {"Status": "Failure",
                                                     "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:bogus"]}


def test_other_config_add_remove(bare_api):
    """Map fields have add_to_ and remove_from_; a duplicate key is refused."""
    bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    bare_api.VM.add_to_other_config(vm, "xsguard", "skip")
    assert failure(bare_api.VM.add_to_other_config, vm, "xsguard", "x")[0] == "MAP_DUPLICATE_KEY"
    assert bare_api.VM.get_other_config(vm) == {"xsguard": "skip"}
    bare_api.VM.remove_from_other_config(vm, "xsguard")
    assert bare_api.VM.get_other_config(vm) == {}


def test_hooks_run_as_xenopsd_runs_them(bare_api):
    """Sorted by name, argv -vmuuid U -reason none, PATH-only env, devices already attached."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    uuid = bare_api.VM.get_uuid(vm)
    root = install_hook(bare_api, host, "20second", """
        #!/bin/sh
        echo "$0 $*" >> "$(dirname "$0")/../../../calls"
        """)
    install_hook(bare_api, host, "10first", """
        #!/bin/sh
        echo "$0 $*" >> "$(dirname "$0")/../../../calls"
        env | sort >> "$(dirname "$0")/../../../calls"
        """)
    bare_api.VM.start(vm, False, False)
    with open(os.path.join(root, "calls")) as handle:
        lines = handle.read().splitlines()
    assert lines[0].endswith("10first -vmuuid %s -reason none" % uuid)
    env = {line.split("=", 1)[0] for line in lines[1:-1]}
    assert env <= {"PATH", "XSGUARD_CONFIG", "PWD", "SHLVL", "_"}
    assert "PATH=/sbin:/usr/sbin:/bin:/usr/bin" in lines
    assert lines[-1].endswith("20second -vmuuid %s -reason none" % uuid)
    assert bare_api.VM.get_power_state(vm) == "Running"


def test_devices_read_attached_during_the_hook(bare_api, bare_sim):
    """The trap: xapi sets currently_attached before xenopsd runs the hook, and resets it after."""
    import threading

    from tests.pool import connect

    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    root = install_hook(bare_api, host, "10wait", """
        #!/bin/sh
        top="$(dirname "$0")/../../.."
        touch "$top/in-hook"
        while [ ! -e "$top/go" ]; do sleep 0.02; done
        exit 2
        """)
    vbd = bare_api.VM.get_VBDs(vm)[0]
    assert bare_api.VBD.get_currently_attached(vbd) is False
    outcome = []
    other = connect(bare_sim.url).xenapi  # a session of its own: one XML-RPC connection per thread
    starter = threading.Thread(target=lambda: outcome.append(failure(other.VM.start, vm, False, False)))
    starter.start()
    wait_for(lambda: os.path.exists(os.path.join(root, "in-hook")))
    during = bare_api.VBD.get_currently_attached(vbd)
    scheduled = bare_api.VM.get_scheduled_to_be_resident_on(vm)
    open(os.path.join(root, "go"), "w").close()
    starter.join(10)
    assert during is True and scheduled == host
    assert outcome[0][0] == "XAPI_HOOK_FAILED"
    assert bare_api.VBD.get_currently_attached(vbd) is False
    assert bare_api.VM.get_power_state(vm) == "Halted"


@pytest.mark.parametrize("code,outcome", [(0, "Running"), (1, "Running"), (2, "fail"), (77, "fail")])
def test_hook_exit_codes(bare_api, code, outcome):
    """0 goes on, 1 logs and goes on, anything else is XAPI_HOOK_FAILED and the VM stays halted."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    install_hook(bare_api, host, "50test", """
        #!/bin/sh
        echo "said $1"
        echo "to stderr" >&2
        exit %d
        """ % code)
    if outcome == "Running":
        bare_api.VM.start(vm, False, False)
        assert bare_api.VM.get_power_state(vm) == "Running"
    else:
        details = failure(bare_api.VM.start, vm, False, False)
        assert details == ["XAPI_HOOK_FAILED", "vm-pre-start/50test", "none", "said -vmuuid\n", str(code)]
        assert bare_api.VM.get_power_state(vm) == "Halted"
        assert bare_api.VM.get_scheduled_to_be_resident_on(vm) == "OpaqueRef:NULL"


def test_crashing_python_hook_lets_the_start_through(bare_api):
    """CPython exits 1 on an uncaught exception: xenopsd logs it and starts the VM anyway."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    install_hook(bare_api, host, "50crash", """
        #!/usr/bin/python3
        raise RuntimeError("boom")
        """)
    bare_api.VM.start(vm, False, False)
    assert bare_api.VM.get_power_state(vm) == "Running"
    assert bare_api.sim.get_hook_log()[-1]["exit_code"] == "1"


def test_hook_killed_by_a_signal_is_an_internal_error(bare_api):
    """A hook that dies of a signal fails the start with xenopsd's internal error."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    install_hook(bare_api, host, "50kill", """
        #!/bin/sh
        kill -9 $$
        """)
    details = failure(bare_api.VM.start, vm, False, False)
    assert details[0] == "INTERNAL_ERROR" and "WSIGNALED 9" in details[1]
    assert bare_api.VM.get_power_state(vm) == "Halted"


def install_plugin(api, host, body):
    root = api.sim.get_host_root(host)
    path = os.path.join(root, "etc", "xapi.d", "plugins", "probe")
    with open(path, "w") as handle:
        handle.write(textwrap.dedent(body).lstrip())
    os.chmod(path, 0o755)


def test_plugin_outcomes(bare_api):
    """A plugin's value, its Failure, garbage, a non-zero exit and a missing plugin, as xapi maps them."""
    host = bare_api.sim.add_host("xs-a", {})
    install_plugin(bare_api, host, """
        #!/usr/bin/env python3
        import sys, xmlrpc.client
        params, fn = xmlrpc.client.loads(sys.argv[1])
        if fn == "ok":
            print(xmlrpc.client.dumps(({"Status": "Success", "Value": "v=" + params[1]["k"]},), methodresponse=True))
        elif fn == "fail":
            print(xmlrpc.client.dumps(({"Status": "Failure", "ErrorDescription": ["MY_CODE", "p1"]},),
                                      methodresponse=True))
        elif fn == "garbage":
            print("this is not xml")
        else:
            sys.stderr.write("bad")
            sys.exit(3)
        """)
    call = bare_api.host.call_plugin
    assert call(host, "probe", "ok", {"k": "x"}) == "v=x"
    assert failure(call, host, "probe", "fail", {}) == ["MY_CODE", "p1"]
    assert failure(call, host, "probe", "garbage", {})[:3] == [
        "XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", "this is not xml\n"]
    assert failure(call, host, "probe", "exit", {}) == ["XENAPI_PLUGIN_FAILURE", "non-zero exit", "", "bad"]
    assert failure(call, host, "absent", "x", {}) == ["XENAPI_MISSING_PLUGIN", "absent"]


def test_start_picks_affinity_then_memory(bare_api):
    """Affinity first; otherwise a host with room (here only one has); none fits: xapi's error."""
    a = bare_api.sim.add_host("xs-a", {})
    b = bare_api.sim.add_host("xs-b", {})
    first = make_vm(bare_api, "first", memory_gib=200, affinity=b)
    bare_api.VM.start(first, False, False)
    assert bare_api.VM.get_resident_on(first) == b
    second = make_vm(bare_api, "second", memory_gib=100)
    bare_api.VM.start(second, False, False)
    assert bare_api.VM.get_resident_on(second) == a
    third = make_vm(bare_api, "third", memory_gib=200)
    assert failure(bare_api.VM.start, third, False, False)[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"


def test_power_state_errors(bare_api):
    """Starting a running VM or stopping a halted one: VM_BAD_POWER_STATE with xapi's parameters."""
    bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    assert failure(bare_api.VM.hard_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    bare_api.VM.start(vm, False, False)
    assert failure(bare_api.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_ports_follow_the_guest(bare_api):
    """Immediate channels at start, PV channels when drivers connect, all freed at shutdown."""
    host = bare_api.sim.add_host("xs-a", {"vcpus": "16"})
    base = int(bare_api.sim.get_dom0(host)["ports_used"])
    vm = make_vm(bare_api, "win", vcpus=4, hvm=True, firmware="uefi", windows=True, disks=2, nics=1)
    bare_api.sim.set_guest(vm, {"connect_delay": "0.3", "ctrl_ring": "true"})
    bare_api.VM.start(vm, False, False)
    domid = bare_api.VM.get_domid(vm)
    assert bare_api.sim.get_dom0(host)["by_remote_domain"] == {domid: str(2 + 5 + 4)}
    wait_for(lambda: bare_api.sim.get_dom0(host)["by_remote_domain"].get(domid) == "22")
    bare_api.VM.clean_shutdown(vm)
    assert int(bare_api.sim.get_dom0(host)["ports_used"]) == base


def test_guest_without_pv_drivers_never_binds_devices(bare_api):
    """An HVM guest without PV drivers uses emulated devices: no VBD or VIF channels."""
    host = bare_api.sim.add_host("xs-a", {"vcpus": "16"})
    vm = make_vm(bare_api, "old", vcpus=2, hvm=True, disks=2, nics=2)
    bare_api.sim.set_guest(vm, {"pv_drivers": "false"})
    bare_api.VM.start(vm, False, False)
    assert bare_api.sim.get_dom0(host)["by_remote_domain"] == {bare_api.VM.get_domid(vm): "5"}


def exhaust(api):
    """Start 12 VMs whose drivers connect while the next ones start, on a 120-port dom0."""
    host = api.sim.add_host("xs-a", {"vcpus": "4", "abi": "2-level", "port_limit": "120"})
    api.sim.set_xsguard_config(host, {"dom0.port_limit": "120", "policy.margin": "0"})
    errors = []
    for i in range(12):
        vm = make_vm(api, "vm%d" % i, vcpus=4, hvm=True, disks=1, nics=1)
        api.sim.set_guest(vm, {"connect_delay": "0.5"})  # drivers connect after the next starts
        try:
            api.VM.start(vm, False, False)
        except XenAPI.Failure as exc:
            errors.append(exc.details)
    return host, errors


def test_exhaustion_without_a_guard_fails_like_a_real_host(bare_api):
    """No hook: devices fail with error 28 once dom0 runs out, then starts fail inside xenopsd."""
    host, errors = exhaust(bare_api)
    started = 12 - len(errors)
    failures = wait_for(lambda: [f for f in bare_api.sim.get_failures() if "ring-refs" in f["error"]])
    assert started >= 1 and errors and {e[0] for e in errors} == {"INTERNAL_ERROR"}
    assert any("error 28 mapping ring-refs and evtchn" in f["error"] for f in failures)
    assert int(bare_api.sim.get_dom0(host)["ports_used"]) <= 120


def test_the_same_with_xsguard_fails_nothing(api):
    """The same starts with xsguard installed: refused up front, no device ever fails."""
    host, errors = exhaust(api)
    assert errors and {(e[0], e[4]) for e in errors} == {("XAPI_HOOK_FAILED", "2")}
    running = api.VM.get_all_records_where('field "power_state" = "Running" and field "is_control_domain" = "false"')
    assert len(running) == (120 - 40) // 16  # 5 VMs of 16 ports on a dom0 with 40 of its own
    wait_for(lambda: all(api.sim.get_dom0(host)["by_remote_domain"].get(r["domid"]) == "16" for r in running.values()))
    assert api.sim.get_failures() == []


def test_reboot_runs_the_hook_again_after_the_old_domain_is_gone(bare_api):
    """A reboot frees the old domain's ports, runs pre-start again, and a refusal leaves it halted."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    bare_api.VM.start(vm, False, False)
    old = bare_api.VM.get_domid(vm)
    bare_api.VM.clean_reboot(vm)
    assert bare_api.VM.get_domid(vm) != old
    assert old not in bare_api.sim.get_dom0(host)["by_remote_domain"]
    install_hook(bare_api, host, "50no", "#!/bin/sh\necho no\nexit 2\n")
    assert failure(bare_api.VM.hard_reboot, vm)[0] == "XAPI_HOOK_FAILED"
    assert bare_api.VM.get_power_state(vm) == "Halted"
    assert bare_api.sim.get_dom0(host)["by_remote_domain"] == {}


def test_dom0_files_show_the_state(bare_api):
    """The simulated dom0's lsevtchn and /proc/interrupts parse to the simulator's own counts."""
    from xsguard.model import interrupts, lsevtchn

    host = bare_api.sim.add_host("xs-a", {"vcpus": "2"})
    vm = make_vm(bare_api, "a", vcpus=2, disks=1, nics=1)
    bare_api.VM.start(vm, False, False)
    domid = int(bare_api.VM.get_domid(vm))
    wait_for(lambda: bare_api.sim.get_dom0(host)["by_remote_domain"].get(str(domid)) == "7")
    root = bare_api.sim.get_host_root(host)
    import subprocess

    out = subprocess.run([os.path.join(root, "usr/libexec/xen/bin/lsevtchn"), "0"], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    table = lsevtchn.parse(out)
    dom0 = bare_api.sim.get_dom0(host)
    assert table.ports == int(dom0["ports_used"]) and table.unparsed == []
    assert table.by_remote_domain[domid] == 7
    with open(os.path.join(root, "proc/interrupts")) as handle:
        irqs = interrupts.parse(handle.read())
    assert irqs.irqs == int(dom0["irqs_used"])
    assert irqs.by_consumer["netback"] == 4


def test_fast_responses_are_what_xmlrpc_writes():
    """The simulator's response writer parses back to what xmlrpc.client.dumps would give."""
    from xsguard.sim import wire

    value = {"Status": "Success", "Value": {"OpaqueRef:1": {
        "name_label": "a <b> & \"c\" \u00e9\U0001f600", "VCPUs_max": "2", "is_a_template": False,
        "other_config": {"k&": "v<"}, "VBDs": ["OpaqueRef:2", "OpaqueRef:3"], "n": 3, "f": 1.5, "none": None,
        "empty": [], "nested": {"a": [{"b": True}]}}}}
    ours = xmlrpc.client.loads(wire.response(value).decode("utf-8"))
    theirs = xmlrpc.client.loads(xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True))
    assert ours == theirs


def failed_starts_on_a_32_bit_dom0(api, name, config):
    """Start 25 VMs of 55 ports each (17 fit in 1023, all 25 in 4095) on a 32-bit dom0: the starts
    that failed in dom0 for want of ports (what xsguard let through that did not fit)."""
    host = api.sim.add_host(name, {"vcpus": "4", "abi": "2-level-32"})
    if config:
        api.sim.set_xsguard_config(host, config)
    assert api.sim.get_dom0(host)["port_limit"] == "1023"
    before = len(api.sim.get_failures())
    for i in range(25):
        vm = make_vm(api, "%s-%d" % (name, i), vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
        try:
            api.VM.start(vm, False, False)
        except XenAPI.Failure:
            pass
    wait_for(lambda: not any(t.is_alive() for t in api_timers()), timeout=5)
    return len(api.sim.get_failures()) - before


def test_a_32_bit_dom0_with_its_limit_configured_is_not_over_admitted(api):
    """XenServer 6.2's 32-bit dom0 stops at 1023 ports: with [dom0] port_limit = 1023, no start fails in dom0."""
    assert failed_starts_on_a_32_bit_dom0(api, "xs-configured", {"dom0.port_limit": "1023"}) == 0


@pytest.mark.xfail(strict=True, reason="a 32-bit dom0 is not detected: its kernel log says 2-level (4095) while"
                   " Xen stops at 1023, so xsguard over-admits until [dom0] port_limit = 1023 is set (README)")
def test_a_32_bit_dom0_left_unconfigured_is_not_over_admitted(api):
    """The safe behaviour wanted: a 32-bit dom0 with no port_limit set is not over-admitted either."""
    assert failed_starts_on_a_32_bit_dom0(api, "xs-auto", {}) == 0


def api_timers():
    import threading

    return [t for t in threading.enumerate() if isinstance(t, threading.Timer)]


def test_answers_the_calls_dom0s_xenapi_makes_at_login(api):
    """pool.get_all, pool.get_master and host.get_API_version_major/minor answer as xapi's do."""
    host = api.sim.add_host("xs-a", {})
    pools = api.pool.get_all()
    assert len(pools) == 1 and pools[0].startswith("OpaqueRef:")
    assert api.pool.get_master(pools[0]) == host
    assert (api.host.get_API_version_major(host), api.host.get_API_version_minor(host)) == ("2", "21")


def test_set_dom0_keeps_the_keys_left_out(bare_api):
    """sim.set_dom0 with one key changes that key only; a new ABI brings its own port limit."""
    host = bare_api.sim.add_host("xs-a", {"vcpus": "8", "abi": "2-level", "irq_limit": "5000",
                                           "baseline_ports": "70"})
    bare_api.sim.set_dom0(host, {"vcpus": "4"})
    dom0 = bare_api.sim.get_dom0(host)
    assert (dom0["vcpus"], dom0["abi"], dom0["port_limit"], dom0["irq_limit"], dom0["baseline_ports"]) == (
        "4", "2-level", "4095", "5000", "70")
    ctrl = bare_api.host.get_control_domain(host)
    assert bare_api.VM.get_VCPUs_max(ctrl) == "4"
    bare_api.sim.set_dom0(host, {"abi": "fifo"})
    dom0 = bare_api.sim.get_dom0(host)
    assert (dom0["vcpus"], dom0["abi"], dom0["port_limit"], dom0["irq_limit"]) == ("4", "fifo", "131071", "5000")
    bare_api.sim.set_dom0(host, {"abi": "2-level", "port_limit": "1000"})
    assert bare_api.sim.get_dom0(host)["port_limit"] == "1000"
