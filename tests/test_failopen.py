"""Never fail open by accident: full disks, slow storage, a slow xapi, stale boot logs, bad probes and state.

Each case runs through the real entry points: the hook as xenopsd runs it, the plugin as
xapi runs it.
"""

import json
import os
import random
import shutil
import stat
import sys

import pytest

from tests.pool import failure, make_vm, small_host, wait_for
from tests.test_hook import decisions, hook_runs
from tests.test_storm import NEED, desktops, host_with_room, start_all


def test_a_refusal_stands_on_a_full_disk(api, small_disk):
    """No free port and no free byte: the VM needing 41 is refused (exit 2), never let through."""
    host = small_host(api, port_limit=40 + 8 + 2, vcpus=4,  # dom0's 40 ports, the margin, 2 free
                      config={"ledger.path": os.path.join(small_disk.path, "ledger.json")})
    api.VM.start(make_vm(api, "fill", disks=0, nics=0, affinity=host), False, False)  # 2 ports: 0 free
    small_disk.fill()
    big = make_vm(api, "big", vcpus=8, hvm=True, firmware="uefi", disks=4, nics=2, windows=True, affinity=host)
    details = failure(api.VM.start, big, False, False)
    assert (details[0], details[4]) == ("XAPI_HOOK_FAILED", "2")
    assert "it needs 41 dom0 event channels; 0 are left" in details[3]
    assert api.VM.get_power_state(big) == "Halted"


def ledger_uuids(api, host):
    """The VMs the host's ledger charges: its entries and its appended charges."""
    base = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json")
    found = set()
    if os.path.exists(base):
        with open(base) as handle:
            found |= {e["vm_uuid"] for e in json.load(handle)["entries"]}
    if os.path.exists(base + ".pending"):
        with open(base + ".pending") as handle:
            found |= {json.loads(line)["vm_uuid"] for line in handle if line.strip()}
    return found


def unchecked_uuids(api):
    return {r["vm"] for r in hook_runs(api) if r["exit_code"] == "1"}


def slow_fsync_python(tmp_path, dom0_python):
    """dom0's python3 under strace, every fsync delayed 1 s (slow storage)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    python = dom0_python or sys.executable
    wrapper = tmp_path / "python3"
    wrapper.write_text('#!/bin/sh\nexec strace -f -qq -o /dev/null -e trace=fsync,fdatasync '
                       '-e inject=fsync:delay_enter=1000000 -e inject=fdatasync:delay_enter=1000000 %s "$@"\n'
                       % python)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def test_a_storm_with_one_second_fsyncs_lets_nothing_through_unchecked(tmp_path, dom0_python):
    """24 starts onto room for 12 with every fsync taking 1 s: 12 admitted, 12 refused, none unchecked."""
    from tests.pool import connect
    from xsguard.sim.server import Simulator

    with Simulator(interpreter=slow_fsync_python(tmp_path, dom0_python)) as sim:
        api = connect(sim.url).xenapi
        host = host_with_room(api, "xs-a", 12)
        refs = desktops(api, 24, "desk", random.Random(3), affinity=host)
        outcomes = start_all(sim.url, refs)
        codes = sorted(r["exit_code"] for r in hook_runs(api))
        assert codes == ["0"] * 12 + ["2"] * 12
        assert sum(1 for o in outcomes.values() if o == "ok") == 12
        wait_for(lambda: api.sim.get_failures() == [] or None, 15)


def test_a_storm_against_a_slow_xapi_charges_every_start_let_through(api, sim):
    """xapi answering each call in 1 s: starts let through past the deadline are all charged, and
    the next checked start counts them."""
    host = host_with_room(api, "xs-a", 4)
    refs = desktops(api, 6, "desk", random.Random(5), affinity=host)
    api.sim.set_call_delay(1.0)
    try:
        start_all(sim.url, refs)
    finally:
        api.sim.set_call_delay(0)
    let_through = unchecked_uuids(api)
    assert let_through, "no start went past the deadline: the delay did not bite"
    assert let_through <= ledger_uuids(api, host)
    late = make_vm(api, "late", vcpus=2, disks=1, nics=1, affinity=host)
    details = failure(api.VM.start, late, False, False)
    assert (details[0], details[4]) == ("XAPI_HOOK_FAILED", "2")
    refusals = [r for r in decisions(api, host) if r["event"] == "start_refused"]
    assert [(r["vm_name"], r["need"]) for r in refusals] == [("late", NEED)]


def two_level_host(api, name="xs-2l"):
    """A host with a 2-level dom0 (xen.fifo_events=0) and the port limit detected, not configured."""
    return api.sim.add_host(name, {"vcpus": "4", "abi": "2-level"})


def test_a_stale_boot_head_in_kern_log_is_not_trusted(api):
    """kern.log's head from an earlier FIFO boot, this boot's lines beyond it: this boot's cmdline
    says 2-level, so 4095, not 131071."""
    host = two_level_host(api)
    log = os.path.join(api.sim.get_host_root(host), "var", "log", "kern.log")
    with open(log, "w") as handle:  # not rotated at reboot: the head is the earlier boot's
        handle.write("Nov 20 07:00:01 xs-2l kernel: [    0.000000] Linux version 4.19.0+1\n"
                     "Nov 20 07:00:01 xs-2l kernel: [    2.750855] xen:events: Using FIFO-based ABI\n")
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["port_limit"] == 4095
    assert "131071" not in status["port_limit_source"]


@pytest.mark.parametrize("text", ["", "garbage that is no table\n"])
def test_an_empty_or_unrecognised_proc_interrupts_is_a_failed_probe(api, text):
    """/proc/interrupts empty or unrecognised: on_error = deny refuses, the plugin says PROBE_FAILED."""
    host = small_host(api, port_limit=4095, config={"policy.on_error": "deny"})
    path = os.path.join(api.sim.get_host_root(host), "proc", "interrupts")
    os.unlink(path)
    with open(path, "w") as handle:
        handle.write(text)
    details = failure(api.host.call_plugin, host, "xsguard", "status", {})
    assert details[0] == "XSGUARD_PROBE_FAILED"
    vm = make_vm(api, "a", affinity=host)
    details = failure(api.VM.start, vm, False, False)
    assert (details[0], details[4]) == ("XAPI_HOOK_FAILED", "2")
    assert decisions(api, host, 1)[-1]["error"] == "XSGUARD_PROBE_FAILED"


@pytest.mark.parametrize("entries", [
    '[{"vm_uuid": "x", "vm_name": "", "need": Infinity, "admitted_at": 1, "domid": null, "how": "checked"}]',
    '[{"vm_uuid": "x", "vm_name": "", "need": 1e999, "admitted_at": 1, "domid": null, "how": "checked"}]',
    "[" * 100000 + "]" * 100000,
])
def test_a_corrupt_ledger_is_set_aside_whatever_it_holds(api, entries):
    """Infinity, 1e999 or 100000-deep nesting: set aside, rebuilt, the start admitted (not an internal error)."""
    host = small_host(api, port_limit=4095)
    root = api.sim.get_host_root(host)
    with open(os.path.join(root, "proc", "sys", "kernel", "random", "boot_id")) as handle:
        boot_id = handle.read().strip()
    ledger = os.path.join(root, "var", "lib", "xsguard", "ledger.json")
    os.makedirs(os.path.dirname(ledger), mode=0o700, exist_ok=True)
    with open(ledger, "w") as handle:
        handle.write('{"version": 1, "boot_id": "%s", "entries": %s}' % (boot_id, entries))
    vm = make_vm(api, "a", affinity=host)
    api.VM.start(vm, False, False)
    assert hook_runs(api)[-1]["exit_code"] == "0"
    assert [r["event"] for r in decisions(api, host, 2)] == ["ledger_reset", "start_admitted"]
    assert any(n.startswith("ledger.json.corrupt-") for n in os.listdir(os.path.dirname(ledger)))


def test_alerts_state_with_a_non_number_does_not_stop_alerts(api):
    """alerts.json holding a string time: the refusal still raises its xapi message."""
    host = small_host(api, port_limit=100, vcpus=4)
    vm = make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
    state_dir = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard")
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(state_dir, "alerts.json"), "w") as handle:
        json.dump({api.VM.get_uuid(vm): "soon", "other": [1]}, handle)
    failure(api.VM.start, vm, False, False)
    wait_for(lambda: [m for m in api.message.get_all_records().values() if m["name"] == "XSGUARD_START_REFUSED"])


@pytest.mark.parametrize("kept", ['[1e999, "NR_IRQS", "kern.log"]', '[1e999, "NR_IRQS 1e999 (kernel log)"]'])
def test_a_ceilings_cache_with_1e999_is_ignored(api, kept):
    """ceilings.json holding 1e999 for this boot: read again from the kernel log, the start decided."""
    host = small_host(api, port_limit=4095)
    root = api.sim.get_host_root(host)
    with open(os.path.join(root, "proc", "sys", "kernel", "random", "boot_id")) as handle:
        boot_id = handle.read().strip()
    state_dir = os.path.join(root, "var", "lib", "xsguard")
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(state_dir, "ceilings.json"), "w") as handle:
        handle.write('{"boot_id": "%s", "ceilings": {"linux_irqs": %s}}' % (boot_id, kept))
    vm = make_vm(api, "a", affinity=host)
    api.VM.start(vm, False, False)
    assert hook_runs(api)[-1]["exit_code"] == "0"
    assert decisions(api, host, 1)[-1]["event"] == "start_admitted"


STEP_WALL_CLOCK = ("import runpy, sys, time; real = time.time; time.time = lambda: real() + 700; "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def test_a_forward_clock_step_does_not_drop_a_start_in_flight(tmp_path, dom0_python):
    """The wall clock stepped +700 s (past the 600 s TTL) while A's start is in flight: B is still refused.

    The stepped hook's Python reads a wall clock (time.time) 700 s ahead and the
    same CLOCK_MONOTONIC, as after a step by NTP or an operator. (libfaketime cannot leave
    CLOCK_MONOTONIC alone without breaking Python 3.11's time.sleep.)
    """
    import threading

    from tests.pool import connect
    from xsguard.sim.server import Simulator

    stepped = tmp_path / "stepped"
    python = dom0_python or sys.executable
    wrapper = tmp_path / "python3"
    wrapper.write_text('#!/bin/sh\nif [ -e %s ]; then\n  exec %s -c "%s" "$@"\nfi\nexec %s "$@"\n'
                       % (stepped, python, STEP_WALL_CLOCK, python))
    wrapper.chmod(0o755)
    with Simulator(interpreter=str(wrapper)) as sim:
        api = connect(sim.url).xenapi
        host = small_host(api, port_limit=40 + 8 + 10 + 9, vcpus=4)  # room for A (10), not for A and B
        hold = os.path.join(api.sim.get_host_root(host), "etc", "xapi.d", "vm-pre-start", "60hold")
        with open(hold, "w") as handle:
            handle.write("#!/bin/sh\nsleep 4\n")  # keeps each start in flight (scheduled, no domain) 4 s
        os.chmod(hold, 0o755)
        a = make_vm(api, "a", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)
        b = make_vm(api, "b", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)
        starting = threading.Thread(target=lambda: connect(sim.url).xenapi.VM.start(a, False, False))
        starting.start()
        wait_for(lambda: [r for r in hook_runs(api) if r["vm"] == api.VM.get_uuid(a)])
        stepped.write_text("")
        try:
            details = failure(api.VM.start, b, False, False)
        finally:
            starting.join(30)
        assert (details[0], details[4]) == ("XAPI_HOOK_FAILED", "2")
        assert "10 promised to VMs starting" in details[3]
        assert api.VM.get_power_state(a) == "Running"


def test_a_full_var_stops_no_charge_and_loses_no_refusal(api, sim, small_disk):
    """The ledger is per-boot state and lives on /run by default, where a full /var cannot stop it:
    with the decision log's disk full, a storm of 12 starts onto room for 6 admits exactly 6, no device
    fails, and each refusal's record, which the log cannot take, reaches syslog instead."""
    from xsguard import config

    assert config.defaults().ledger.path == "/run/xsguard/ledger.json"
    host = host_with_room(api, "xs-a", 6, config={"log.file": os.path.join(small_disk.path, "decisions.log")})
    small_disk.fill()
    refs = desktops(api, 12, "desk", random.Random(11), affinity=host)
    outcomes = start_all(sim.url, refs)
    assert sum(1 for o in outcomes.values() if o == "ok") == 6
    assert sorted(r["exit_code"] for r in hook_runs(api)) == ["0"] * 6 + ["2"] * 6
    wait_for(lambda: api.sim.get_failures() == [] or None, 15)

    def refusals_in_syslog():
        kept = [s for s in api.sim.get_syslog(host)
                if "cannot write the decision log" in s and '"event": "start_refused"' in s]
        return len(kept) == 6

    wait_for(refusals_in_syslog)
