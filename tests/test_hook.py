"""The vm-pre-start hook, run by the simulated xenopsd as a real subprocess."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.pool import decision_log, failure, make_vm, small_host, wait_for

decisions = decision_log


def hook_runs(api):
    return [e for e in api.sim.get_hook_log() if e["hook"] == "vm-pre-start/50xsguard"]


def fill(api, host, count, **vm):
    """Start ``count`` VMs that fit; returns their refs."""
    refs = []
    for i in range(count):
        ref = make_vm(api, "fill-%d" % i, affinity=host, **vm)
        api.VM.start(ref, False, False)
        refs.append(ref)
    return refs


def test_admits_what_fits_and_refuses_what_does_not(api):
    """A VM that fits starts silently; one that does not gets XAPI_HOOK_FAILED, exit 2, and stays halted."""
    host = small_host(api, port_limit=100, vcpus=4)  # baseline 40, margin 8: 52 ports for guests
    fill(api, host, 3, vcpus=2, disks=1, nics=1)  # PV, 7 each (captured figures, unlike HVM's)
    runs = hook_runs(api)
    assert [r["exit_code"] for r in runs] == ["0", "0", "0"] and {r["stdout"] for r in runs} == {""}
    big = make_vm(api, "big-db", vcpus=8, hvm=True, firmware="uefi", disks=4, nics=2, affinity=host)
    details = failure(api.VM.start, big, False, False)
    assert details[:3] == ["XAPI_HOOK_FAILED", "vm-pre-start/50xsguard", "none"] and details[4] == "2"
    stdout = details[3]
    uuid = api.VM.get_uuid(big)
    assert "xsguard refused to start VM 'big-db' (%s) on host 'xs-a'" % uuid in stdout
    assert "needs 39 dom0 event channels; 31 are left" in stdout
    assert "Largest consumers: qemu-ioreq 9, varstored 8, vif 0 8." in stdout
    assert "[policy] bypass" in stdout and stdout == stdout.encode("ascii").decode()
    assert api.VM.get_power_state(big) == "Halted"
    assert api.sim.get_failures() == []
    log = decisions(api, host, 4)
    assert [r["event"] for r in log] == ["start_admitted"] * 3 + ["start_refused"]
    refused = log[-1]
    assert (refused["vm_uuid"], refused["vm_name"], refused["host_name"]) == (uuid, "big-db", "xs-a")
    assert (refused["need"], refused["ceiling"], refused["mode"]) == (39, "xen_ports", "enforce")
    assert refused["version"] and refused["time"].endswith("Z") and refused["duration_ms"] > 0


def test_warn_mode_logs_and_continues(api):
    """mode = warn: the start goes on, the hook exits 1 with the message for xenopsd's log."""
    host = small_host(api, port_limit=60, vcpus=4, config={"policy.mode": "warn"})
    vm = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    api.VM.start(vm, False, False)
    assert api.VM.get_power_state(vm) == "Running"
    run = hook_runs(api)[-1]
    assert run["exit_code"] == "1" and "mode = warn" in run["stdout"] and "xsguard refused" in run["stdout"]
    assert decisions(api, host, 1)[-1]["event"] == "start_warned"


def test_off_mode_only_logs(api):
    """mode = off: exit 0, nothing printed, the would-be refusal logged."""
    host = small_host(api, port_limit=60, vcpus=4, config={"policy.mode": "off"})
    vm = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    api.VM.start(vm, False, False)
    assert hook_runs(api)[-1]["exit_code"] == "0" and hook_runs(api)[-1]["stdout"] == ""
    assert decisions(api, host, 1)[-1]["event"] == "start_would_refuse"


def test_a_vm_key_cannot_bypass(api):
    """other-config:xsguard=skip is the VM owner's to set: it is ignored, the start is checked."""
    host = small_host(api, port_limit=60, vcpus=4)
    vm = make_vm(api, "special", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    api.VM.add_to_other_config(vm, "xsguard", "skip")
    assert failure(api.VM.start, vm, False, False)[0] == "XAPI_HOOK_FAILED"
    assert decisions(api, host, 1)[-1]["event"] == "start_refused"


def test_bypass_from_dom0_config_is_still_charged(api):
    """A VM listed in [policy] bypass starts unchecked, and the next start is charged for it."""
    host = small_host(api, port_limit=60, vcpus=4)
    special = make_vm(api, "special", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)  # 20 ports, 12 free
    api.sim.set_guest(special, {"connect_delay": "30"})  # its PV devices have not connected yet
    api.sim.set_xsguard_config(host, {"policy.bypass": api.VM.get_uuid(special)})
    api.VM.start(special, False, False)
    assert api.VM.get_power_state(special) == "Running"
    assert decisions(api, host, 1)[-1]["event"] == "start_bypassed"
    small = make_vm(api, "small", vcpus=1, disks=0, nics=0, affinity=host)  # 2 ports
    assert failure(api.VM.start, small, False, False)[0] == "XAPI_HOOK_FAILED"
    refusal = decisions(api, host, 2)[-1]
    assert refusal["event"] == "start_refused"
    assert [p["vm_uuid"] for p in refusal["promised_to"]] == [api.VM.get_uuid(special)]


def guard_error_case(api, values, vm_fields=None):
    host = small_host(api, port_limit=4095, vcpus=4, config=values)
    vm = make_vm(api, "victim", affinity=host, **(vm_fields or {}))
    return host, vm


def test_xapi_down_on_error_allow(api):
    """xapi unreachable with on_error = allow: exit 1 with the reason, the start goes on, logged."""
    host, vm = guard_error_case(api, {"xapi.url": "http://127.0.0.1:9/", "policy.deadline": "1"})
    api.VM.start(vm, False, False)
    run = hook_runs(api)[-1]
    assert run["exit_code"] == "1"
    assert run["stdout"].startswith("xsguard could not check the start of VM %s; let through unchecked"
                                    " ([policy] on_error = allow)" % api.VM.get_uuid(vm))
    assert "xapi is not answering on http://127.0.0.1:9/" in run["stdout"]
    records = decisions(api, host, 3)
    assert (records[0]["event"], records[0]["error"], records[0]["on_error"]) == (
        "guard_error", "XSGUARD_XAPI_UNREACHABLE", "allow")
    assert records[1]["event"] == "start_unchecked"
    assert records[2]["event"] == "alert_failed"  # the alert goes to the same unreachable xapi


def test_xapi_down_on_error_deny(api):
    """The same with on_error = deny: XAPI_HOOK_FAILED with exit 2 and a message that the guard failed."""
    host, vm = guard_error_case(api, {"xapi.url": "http://127.0.0.1:9/", "policy.deadline": "1",
                                      "policy.on_error": "deny"})
    details = failure(api.VM.start, vm, False, False)
    assert details[4] == "2"
    assert "xsguard could not check this start and is set to refuse when it fails" in details[3]
    assert "What failed: xapi is not answering on http://127.0.0.1:9/" in details[3]
    assert api.VM.get_power_state(vm) == "Halted"


def test_lsevtchn_missing(api):
    """lsevtchn absent: a guard error naming it; allow lets the start through."""
    host, vm = guard_error_case(api, {"dom0.lsevtchn": "/nonexistent/lsevtchn"})
    api.VM.start(vm, False, False)
    run = hook_runs(api)[-1]
    assert run["exit_code"] == "1" and "lsevtchn not found or not executable at /nonexistent/lsevtchn" in run["stdout"]
    records = decisions(api, host, 2)
    assert [r["event"] for r in records] == ["guard_error", "start_unchecked"]
    assert records[0]["error"] == "XSGUARD_PROBE_FAILED"


def test_lsevtchn_hanging_past_the_deadline(api, tmp_path):
    """An lsevtchn that hangs is killed at the deadline; deny refuses within it."""
    hang = tmp_path / "lsevtchn"
    hang.write_text("#!/bin/sh\nexec sleep 60\n")
    hang.chmod(0o755)
    host, vm = guard_error_case(api, {"dom0.lsevtchn": str(hang), "policy.deadline": "1.5",
                                      "dom0.probe_timeout": "30", "policy.on_error": "deny"})
    started = time.monotonic()
    details = failure(api.VM.start, vm, False, False)
    elapsed = time.monotonic() - started
    assert details[4] == "2" and "did not answer within" in details[3]
    assert elapsed < 10  # bounded by the deadline, not by lsevtchn's 60 s
    assert decisions(api, host, 1)[-1]["error"] == "XSGUARD_PROBE_FAILED"


def test_garbage_from_lsevtchn(api, tmp_path):
    """lsevtchn printing no port line at all is a probe failure, not a count of 0."""
    junk = tmp_path / "lsevtchn"
    junk.write_text("#!/bin/sh\necho 'xc_interface_open failed'\n")
    junk.chmod(0o755)
    host, vm = guard_error_case(api, {"dom0.lsevtchn": str(junk), "policy.on_error": "deny"})
    details = failure(api.VM.start, vm, False, False)
    assert "printed no port lines" in details[3]


def test_crash_inside_the_package(api, sim):
    """An unexpected exception inside xsguard is an internal error under on_error, never an accidental exit 1."""
    host, vm = guard_error_case(api, {"policy.on_error": "deny"})
    with sim.pool.lock:
        sim.pool.vm(vm)["VCPUs_max"] = "lots"  # a record no code path expects
    details = failure(api.VM.start, vm, False, False)
    assert details[4] == "2" and "internal error in xsguard: ValueError" in details[3]
    assert decisions(api, host, 1)[-1]["error"] == "XSGUARD_INTERNAL_ERROR"


def with_private_var(api, host):
    """Run the host's hook with /var/log and /var/lib of its own (a mount namespace, as root): with its
    config unreadable, the hook logs where the defaults say, this machine's own directories."""
    if subprocess.call(["unshare", "--mount", "true"], stderr=subprocess.DEVNULL) != 0:
        return  # not root: the hook cannot write this machine's /var/log and /var/lib either
    hooks = os.path.join(api.sim.get_host_root(host), "etc", "xapi.d")
    os.makedirs(os.path.join(hooks, "real"))
    real = os.path.join(hooks, "real", "50xsguard")  # as deep as the hook: it finds /usr/lib/xsguard alike
    os.rename(os.path.join(hooks, "vm-pre-start", "50xsguard"), real)
    with open(os.path.join(hooks, "vm-pre-start", "50xsguard"), "w") as handle:
        handle.write("#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount -t tmpfs none /var/log &&"
                     " mount -t tmpfs none /var/lib && exec \"$0\" \"$@\"' %s \"$@\"\n" % real)
    os.chmod(os.path.join(hooks, "vm-pre-start", "50xsguard"), 0o755)


def test_a_config_error_with_no_earlier_copy_decides_with_the_defaults_for_the_bad_key(api):
    """A value the hook cannot parse and no configuration that parsed kept: the start is decided with
    the default for that key (mode = enforce) and the file's other keys, and the error is logged."""
    host = small_host(api, port_limit=4095, config={"policy.mode": "sometimes"})
    with_private_var(api, host)
    vm = make_vm(api, "a", affinity=host)
    api.VM.start(vm, False, False)
    assert hook_runs(api)[-1]["exit_code"] == "0"
    records = decisions(api, host, 2)
    assert [r["event"] for r in records] == ["config_error", "start_admitted"]
    assert "bad value for [policy] mode" in records[0]["detail"] and records[1]["mode"] == "enforce"


def test_bad_arguments_are_rejected_clearly():
    """Unknown hook arguments are named; -vmdomid is tolerated."""
    from xsguard.errors import BadArgument
    from xsguard.hook import parse_argv

    assert parse_argv(["-vmuuid", "u", "-reason", "none", "-vmdomid", "3"]).domid == "3"
    try:
        parse_argv(["-vmuuid", "u", "--force"])
    except BadArgument as exc:
        assert "unexpected hook arguments: -vmuuid u --force" in exc.message
    else:
        raise AssertionError("accepted")


def run_hook(api, host, vm_uuid):
    """The installed hook run by hand as xenopsd runs it: exit status and stdout."""
    root = api.sim.get_host_root(host)
    proc = subprocess.run([os.path.join(root, "etc", "xapi.d", "vm-pre-start", "50xsguard"), "-vmuuid", vm_uuid,
                           "-reason", "none"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "XSGUARD_CONFIG": os.path.join(root, "etc", "xsguard",
                                                                                       "xsguard.conf")})
    return proc.returncode, proc.stdout.decode()


def test_control_domain_is_never_checked(api):
    """The hook run for dom0 itself (never from xapi, but by hand) lets it go, logged as not checked."""
    host = small_host(api, port_limit=4095)
    control = api.host.get_control_domain(host)
    code, out = run_hook(api, host, api.VM.get_uuid(control))
    assert (code, out) == (0, "")
    record = decisions(api, host, 1)[0]
    assert record["event"] == "start_not_checked"
    assert "is a control domain (dom0 or a driver domain), not a VM that starts" in record["why"]


def test_a_hook_hung_past_its_deadline_is_stopped_by_the_alarm(api, tmp_path):
    """A probe that blocks where no timeout reaches (opening a FIFO nobody writes): the alarm ends the
    hook just past its deadline and on_error decides."""
    fifo = str(tmp_path / "interrupts")
    os.mkfifo(fifo)
    host, vm = guard_error_case(api, {"dom0.proc_interrupts": fifo, "policy.deadline": "0.5",
                                      "policy.on_error": "deny"})
    details = failure(api.VM.start, vm, False, False)
    assert details[0] == "XAPI_HOOK_FAILED" and details[4] == "2"
    assert "What failed: xsguard ran past its deadline" in details[3]
    record = decisions(api, host, 1)[0]
    assert (record["event"], record["error"]) == ("guard_error", "XSGUARD_DEADLINE_EXCEEDED")


def hook_in_process(api, host, vm, monkeypatch):
    """Run the hook in this process, with no child to be made (its journal is then written before it
    returns); its exit status and the decision log's records."""
    from xsguard import hook

    root = api.sim.get_host_root(host)
    monkeypatch.setenv("XSGUARD_CONFIG", os.path.join(root, "etc", "xsguard", "xsguard.conf"))

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    previous = signal.getsignal(signal.SIGALRM)
    try:
        status = hook.main(["-vmuuid", api.VM.get_uuid(vm), "-reason", "none"])
    finally:
        signal.signal(signal.SIGALRM, previous)
    with open(os.path.join(root, "var", "log", "xsguard", "decisions.log")) as handle:
        return status, [json.loads(line) for line in handle]


def test_the_journal_is_written_in_process_when_no_child_can_be_made(api, monkeypatch):
    """os.fork failing (no memory, a process limit): the decision log is written before the hook returns."""
    host = small_host(api, port_limit=4095)
    status, records = hook_in_process(api, host, make_vm(api, "a", affinity=host), monkeypatch)
    assert status == 0
    assert [(r["event"], r["vm_name"], r["need"]) for r in records] == [("start_admitted", "a", 5)]


def test_a_vm_with_a_vgpu_is_charged_for_it_in_one_more_call(api, sim):
    """vGPUs are asked for only when the VM has some: one more call, and vCPUs + 1 ports each."""
    host = small_host(api, port_limit=4095, vcpus=16)
    api.VM.start(make_vm(api, "first", affinity=host), False, False)  # the ledger is no longer empty
    plain = make_vm(api, "plain", vcpus=4, hvm=True, affinity=host)
    gpu = make_vm(api, "gpu", vcpus=4, hvm=True, affinity=host)
    api.VGPU.create(gpu, "OpaqueRef:NULL", "0", {})
    assert count_calls(api, lambda: api.VM.start(plain, False, False)) == 5
    assert count_calls(api, lambda: api.VM.start(gpu, False, False)) == 6
    vgpu_calls = [c for c in api.sim.get_calls() if c == ["xsguard", "VGPU.get_all_records_where"]]
    assert len(vgpu_calls) == 1
    need = json.loads(api.host.call_plugin(host, "xsguard", "need", {"vm_uuid": api.VM.get_uuid(gpu)}))
    assert [(b["consumer"], b["ports"]) for b in need["breakdown"] if b["consumer"].startswith("vgpu")] == [
        ("vgpu 0", 5)]
    assert need["total"] == 1 + 1 + 5 + 1 + 4 * 2 + 5  # xenstore, console, QEMU, disk, 4 queues x 2, vGPU


def count_calls(api, fn):
    before = len([c for c in api.sim.get_calls() if c[0] == "xsguard"])
    fn()
    return len([c for c in api.sim.get_calls() if c[0] == "xsguard"]) - before


def test_round_trips_do_not_grow_with_vms_or_devices(api, sim):
    """The same number of XenAPI calls for a VM with 1 device or 16, on a host with 2 VMs or 200."""
    host = small_host(api, port_limit=131071, vcpus=16)
    api.VM.start(make_vm(api, "first", affinity=host), False, False)  # the ledger is no longer empty
    few = make_vm(api, "few", disks=1, nics=0, affinity=host)
    calls_small = count_calls(api, lambda: api.VM.start(few, False, False))
    for i in range(200):
        make_vm(api, "idle-%d" % i, disks=1, nics=1)
    many = make_vm(api, "many", disks=8, nics=8, affinity=host)
    calls_large = count_calls(api, lambda: api.VM.start(many, False, False))
    assert calls_small == calls_large
    assert calls_large == 5  # host, VM + dom0, VBDs, VIFs, ledger VMs


def test_reboot_is_checked_again(api):
    """A reboot runs the hook after the old domain is gone: the VM's own old ports are not counted."""
    host = small_host(api, port_limit=100, vcpus=4)  # 52 for guests
    vm = make_vm(api, "big", vcpus=8, hvm=True, disks=2, nics=1, affinity=host)  # 2+9+2+8 = 21
    fill(api, host, 2, vcpus=2, disks=1, nics=1)  # PV, 14 more: 35 of 52
    api.VM.start(vm, False, False)
    api.VM.clean_reboot(vm)
    assert api.VM.get_power_state(vm) == "Running"
    assert [r["event"] for r in decisions(api, host, 4)][-1] == "start_admitted"


def test_xenapi_failure_is_not_retried(api, sim):
    """A XenAPI Failure from xapi (a record gone: HANDLE_INVALID) is an answer: raised as XapiFailure
    with xapi's details after one call, never asked again."""
    host = small_host(api, port_limit=4095)
    from xsguard import config as config_mod
    from xsguard.deadline import Deadline
    from xsguard.errors import XapiFailure
    from xsguard.xapi import Xapi

    cfg = config_mod.load(os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))
    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        before = len(api.sim.get_calls())
        with pytest.raises(XapiFailure) as raised:
            xs.call("VM.get_record", "OpaqueRef:00000000-dead-4000-8000-000000000000")
        calls = [c[1] for c in api.sim.get_calls()[before:] if not c[1].startswith("sim.")]
    assert raised.value.details[0] == "HANDLE_INVALID"
    assert calls == ["VM.get_record"]


def test_unknown_vm_is_asked_once_by_uuid_and_once_by_name(api, sim):
    """A VM deleted between xenopsd's call and the hook: VmNotFound, asked once by uuid, once by name."""
    host = small_host(api, port_limit=4095, config={"policy.on_error": "deny"})
    from xsguard import config as config_mod
    from xsguard.deadline import Deadline
    from xsguard.decision import admit
    from xsguard.errors import VmNotFound
    from xsguard.xapi import Xapi

    cfg = config_mod.load(os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))
    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        before = len(api.sim.get_calls())
        try:
            admit(cfg, xs, "7e1b1c55-0000-4000-8000-000000000000", Deadline(5))
        except VmNotFound as exc:
            assert "no VM has uuid or name" in exc.message
        else:
            raise AssertionError("found a VM that does not exist")
        where_calls = [c for c in api.sim.get_calls()[before:] if c[1] == "VM.get_all_records_where"]
        assert len(where_calls) == 2  # by uuid, then by name: each asked once, no retry




def test_corrupt_ledger_is_set_aside_and_the_start_decided(api):
    """A ledger that does not parse: kept aside, the start still decided, ledger_reset logged."""
    host = small_host(api, port_limit=4095)
    root = api.sim.get_host_root(host)
    ledger = os.path.join(root, "var", "lib", "xsguard", "ledger.json")
    with open(ledger, "w") as handle:
        handle.write('{"version": 1, "entries": [{"vm_uuid": ')
    vm = make_vm(api, "a", affinity=host)
    api.VM.start(vm, False, False)
    assert api.VM.get_power_state(vm) == "Running"
    records = decisions(api, host, 2)
    assert [r["event"] for r in records] == ["ledger_reset", "start_admitted"]
    assert "kept as" in records[0]["note"]
    aside = [n for n in os.listdir(os.path.dirname(ledger)) if n.startswith("ledger.json.corrupt-")]
    assert len(aside) == 1
    with open(ledger) as handle:
        assert [e["vm_uuid"] for e in json.load(handle)["entries"]] == [api.VM.get_uuid(vm)]


def test_status_lists_what_is_promised(api):
    """A started VM whose drivers have not connected: status shows what it is still owed."""
    host = small_host(api, port_limit=4095, vcpus=4)
    vm = make_vm(api, "slow", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)
    api.sim.set_guest(vm, {"connect_delay": "30"})
    api.VM.start(vm, False, False)
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["promises"] == [{"vm_uuid": api.VM.get_uuid(vm), "vm_name": "slow", "need": 10, "held": 5,
                                   "owed": 5, "state": "running"}]
    assert status["promised"] == 5
    assert status["ports_free"] == 4095 - 8 - status["ports_used"] - 5


def test_lost_ledger_is_rebuilt_from_live_state(api):
    """The ledger is lost while a VM's drivers have not connected: what it is owed is rebuilt,
    so the next starts cannot take its ports."""
    host = small_host(api, port_limit=40 + 8 + 25, vcpus=4)  # room for 2.5 VMs of 10
    slow = make_vm(api, "slow", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)
    api.sim.set_guest(slow, {"connect_delay": "60"})
    api.VM.start(slow, False, False)  # holds 5 of its 10 for the next minute
    ledger = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json")
    with open(ledger, "w") as handle:
        handle.write("\0\0\0")
    b, c = (make_vm(api, name, vcpus=2, hvm=True, disks=1, nics=1, affinity=host) for name in ("b", "c"))
    for vm in (b, c):
        api.sim.set_guest(vm, {"connect_delay": "60"})
    api.VM.start(b, False, False)
    details = failure(api.VM.start, c, False, False)
    assert details[0] == "XAPI_HOOK_FAILED" and "10 promised to VMs starting" in details[3]
    records = decisions(api, host, 4)  # each hook's writer is its own process: their order may vary
    assert sorted((r["event"], r["vm_name"]) for r in records) == [
        ("ledger_reset", "b"), ("start_admitted", "b"), ("start_admitted", "slow"), ("start_refused", "c")]


def _world_writable_with_link(directory, name, victim):
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o777)
    os.symlink(str(victim), os.path.join(directory, name))


def test_a_world_writable_log_directory_is_refused(api, tmp_path):
    """A 0777 log directory with a planted symlink: root never appends through it; the record goes to syslog."""
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    host = small_host(api, port_limit=100, vcpus=4, config={"log.syslog": "no"})
    logdir = os.path.join(api.sim.get_host_root(host), "var", "log", "xsguard")
    _world_writable_with_link(logdir, "decisions.log", victim)
    vm = make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
    details = failure(api.VM.start, vm, False, False)
    assert details[4] == "2"  # still refused
    lines = wait_for(lambda: api.sim.get_syslog(host))
    assert "unsafe directory: mode 0777 lets others write in it" in lines[0] and '"start_refused"' in lines[0]
    assert victim.read_text() == "secret\n"


def test_a_world_writable_state_directory_is_refused(api, tmp_path):
    """A 0777 state directory: the ledger is unavailable (on_error applies, named), planted links untouched."""
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    host = small_host(api, port_limit=4095, vcpus=4, config={"policy.on_error": "deny"})
    statedir = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard")
    _world_writable_with_link(statedir, "ledger.json.lock", victim)
    vm = make_vm(api, "small", affinity=host)
    details = failure(api.VM.start, vm, False, False)
    assert details[4] == "2"
    assert "unsafe directory: mode 0777 lets others write in it" in details[3]
    assert decisions(api, host, 1)[0]["error"] == "XSGUARD_LEDGER_UNAVAILABLE"
    assert victim.read_text() == "secret\n"


def test_a_refusal_stands_when_other_hosts_cannot_be_asked(api, monkeypatch, capsys):
    """Asking the other hosts where the VM fits fails: the start is still refused (exit 2), with a note."""
    from xsguard import hook, peers
    from xsguard.errors import XapiUnreachable

    host = small_host(api, port_limit=60, vcpus=4)
    vm = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)  # 20 ports, 12 free
    monkeypatch.setenv("XSGUARD_CONFIG", os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))

    def unreachable(*args, **kwargs):
        raise XapiUnreachable("xapi is not answering: timed out")

    monkeypatch.setattr(peers, "room_elsewhere", unreachable)
    status = hook.main(["-vmuuid", api.VM.get_uuid(vm), "-reason", "none"])
    out = capsys.readouterr().out
    assert status == 2
    assert "xsguard refused to start VM 'big'" in out
    assert "other hosts could not be asked where it fits: xapi is not answering: timed out" in out
    assert decisions(api, host, 1)[-1]["event"] == "start_refused"
