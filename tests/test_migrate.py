"""Migrations, evacuations and resumes through the simulated pool, guarded by xsguard's hooks."""

import json
import os
import subprocess
import sys
import threading

import XenAPI

from tests.pool import TEN, connect, decision_log, failure, host_with_free, make_vm, small_host, wait_for


def running(api, name, host, memory_gib=1, **guest):
    """A 10-port VM running on ``host`` (its PV drivers connected unless told otherwise)."""
    vm = make_vm(api, name, affinity=host, memory_gib=memory_gib, **TEN)
    if guest:
        api.sim.set_guest(vm, guest)
    api.VM.start_on(vm, host, False, False)
    if not guest:
        wait_for(lambda: int(api.sim.get_dom0(host)["by_remote_domain"].get(api.VM.get_domid(vm), 0)) == 10)
    return vm


def used(api, host):
    return int(api.sim.get_dom0(host)["ports_used"])


def hook_runs(api, hook):
    return [e for e in api.sim.get_hook_log() if e["hook"] == hook]


def ledger_entries(api, host):
    path = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json")
    with open(path) as handle:
        return {e["vm_uuid"]: e for e in json.load(handle)["entries"]}


def test_migration_admitted_is_recorded_at_the_destination(api):
    """An admitted migration is entered in the destination's ledger, which charges it until its ports are there."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 30)
    vm = running(api, "web", a, connect_delay="30")  # its disks and NICs have not connected yet
    uuid = api.VM.get_uuid(vm)
    api.VM.pool_migrate(vm, b, {})
    assert api.VM.get_resident_on(vm) == b and api.VM.get_power_state(vm) == "Running"
    assert (used(api, a), used(api, b)) == (40, 45)  # the 5 ports it held moved, none left behind
    run = hook_runs(api, "vm-pre-migrate/50xsguard")[-1]
    assert (run["exit_code"], run["reason"]) == ("0", "source")
    entry = ledger_entries(api, b)[uuid]
    assert (entry["need"], entry["how"]) == (10, "checked")
    status = json.loads(api.host.call_plugin(b, "xsguard", "status", {}))
    assert [(p["vm_uuid"], p["held"], p["owed"]) for p in status["promises"]] == [(uuid, 5, 5)]
    assert status["ports_free"] == 30 - 5 - 5
    asked = decision_log(api, a, 2)[-1]
    assert (asked["event"], asked["told"], asked["exit"], asked["host_name"], asked["held"]) == (
        "migrate_asked", "admitted", 0, "xs-b", 5)
    assert "mode" not in asked and asked["destination_mode"] == "enforce"
    decided = decision_log(api, b, 1)[-1]
    assert (decided["event"], decided["host_name"], decided["need"], decided["mode"], decided["held_on_source"]) == (
        "migrate_admitted", "xs-b", 10, "enforce", 5)
    assert api.sim.get_failures() == []


def test_migration_refused_keeps_the_vm_on_the_source(api):
    """A refused migration fails with XAPI_HOOK_FAILED from the source, binds nothing on the destination,
    and names the hosts where the VM fits."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 9)
    host_with_free(api, "xs-c", 60)
    vm = running(api, "db", a)
    uuid = api.VM.get_uuid(vm)
    before = api.sim.get_dom0(b)
    details = failure(api.VM.pool_migrate, vm, b, {})
    assert details[:3] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard", "source"] and details[4] == "2"
    stdout = details[3]
    assert stdout.startswith("xsguard refused to migrate VM 'db' (%s) to host 'xs-b':" % uuid)
    assert "it needs 10 dom0 event channels; 9 are left" in stdout
    assert "    xe vm-migrate uuid=%s host=xs-c   # 50 left after" % uuid in stdout
    assert "host=xs-a" not in stdout and "host=xs-b" not in stdout
    assert api.VM.get_resident_on(vm) == a and api.VM.get_power_state(vm) == "Running"
    assert api.VM.get_scheduled_to_be_resident_on(vm) == "OpaqueRef:NULL"
    after = api.sim.get_dom0(b)
    assert (after["ports_used"], after["by_remote_domain"]) == (before["ports_used"], before["by_remote_domain"])
    assert used(api, a) == 50
    told = decision_log(api, a, 2)[-1]
    assert (told["event"], told["told"], told["exit"], told["host_name"], told["need"], told["elsewhere"]) == (
        "migrate_asked", "refused", 2, "xs-b", 10, ["xs-c"])
    refusal = decision_log(api, b, 1)[-1]
    assert (refusal["event"], refusal["host_name"], refusal["need"], refusal["vm_uuid"]) == (
        "migrate_refused", "xs-b", 10, uuid)
    counts = [json.loads(api.host.call_plugin(h, "xsguard", "status", {}))["refused"] for h in (a, b)]
    assert counts == [0, 1]  # counted on the host that refused, not on the source
    assert alerts_about(api, uuid) == ["XSGUARD_MIGRATION_REFUSED"]
    assert api.sim.get_failures() == []


def alerts_about(api, vm_uuid):
    """The names of the xapi messages raised about a VM, once one is (a detached child sends them)."""
    return wait_for(lambda: sorted(m["name"] for m in api.message.get_all_records().values()
                                   if m["obj_uuid"] == vm_uuid))


def both_at_once(calls):
    """Run each (method, args) on its own session at the same moment; the errors, None for a success."""
    url = calls[0][0]
    results = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i, method, args):
        session = connect(url)
        fn = session.xenapi
        for part in method.split("."):
            fn = getattr(fn, part)
        barrier.wait()
        try:
            fn(*args)
        except XenAPI.Failure as exc:
            results[i] = exc.details
        finally:
            session.xenapi.session.logout()

    threads = [threading.Thread(target=run, args=(i, m, a)) for i, (_, m, a) in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_migrations_onto_room_for_one(api, sim):
    """Two VMs migrated at once onto a host with room for one: exactly one goes."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 15)
    vms = [running(api, "vm-%d" % i, a) for i in range(2)]
    results = both_at_once([(sim.url, "VM.pool_migrate", [vm, b, {}]) for vm in vms])
    assert sorted(r is None for r in results) == [False, True]
    refused = [r for r in results if r is not None][0]
    assert refused[0] == "XAPI_HOOK_FAILED" and refused[4] == "2"
    assert sorted(api.VM.get_resident_on(vm) for vm in vms) == sorted([a, b])
    assert used(api, b) == 50
    assert api.sim.get_failures() == []


def test_starts_and_migrations_racing_onto_one_host(api, sim):
    """Two starts and two migrations at once onto a host with room for two: exactly two go."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 25)
    moving = [running(api, "mover-%d" % i, a) for i in range(2)]
    starting = [make_vm(api, "starter-%d" % i, **TEN) for i in range(2)]
    results = both_at_once([(sim.url, "VM.pool_migrate", [vm, b, {}]) for vm in moving]
                           + [(sim.url, "VM.start_on", [vm, b, False, False]) for vm in starting])
    assert sum(r is None for r in results) == 2
    assert all(r[0] == "XAPI_HOOK_FAILED" for r in results if r is not None)
    wait_for(lambda: used(api, b) == 60)
    assert len([v for v in moving + starting if api.VM.get_resident_on(v) == b]) == 2
    assert api.sim.get_failures() == []


def test_evacuation_that_fits(api):
    """host.evacuate moves every VM onto hosts with room; each binds its ports there."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 25)
    c = host_with_free(api, "xs-c", 25)
    vms = [running(api, "vm-%d" % i, a) for i in range(4)]
    api.host.evacuate(a)
    assert sorted(api.VM.get_resident_on(vm) for vm in vms) == sorted([b, b, c, c])
    assert (used(api, a), used(api, b), used(api, c)) == (40, 60, 60)
    assert [r["exit_code"] for r in hook_runs(api, "vm-pre-migrate/50xsguard")] == ["0"] * 4
    assert api.sim.get_failures() == []


def test_evacuation_that_does_not_fit(api):
    """An evacuation onto too little room fails at the first refused migration; no device fails."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 15)
    vms = [running(api, "vm-%d" % i, a) for i in range(3)]
    details = failure(api.host.evacuate, a)
    assert details[:3] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard", "source"]
    assert "- no other enabled host in this pool to migrate it to\n" in details[3]
    assert sorted(api.VM.get_resident_on(vm) == b for vm in vms) == [False, False, True]
    assert all(api.VM.get_power_state(vm) == "Running" for vm in vms)
    assert (used(api, a), used(api, b)) == (60, 50)
    assert api.sim.get_failures() == []


def test_resume_refused_stays_suspended(api):
    """A refused resume leaves the VM Suspended, its new domain gone, and names where it fits."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 9)
    vm = running(api, "desk", a)
    uuid = api.VM.get_uuid(vm)
    api.VM.suspend(vm)
    assert used(api, a) == 40
    details = failure(api.VM.resume_on, vm, b, False, False)
    assert details[:3] == ["XAPI_HOOK_FAILED", "vm-pre-resume/50xsguard", "none"] and details[4] == "2"
    assert details[3].startswith("xsguard refused to resume VM 'desk' (%s) on host 'xs-b':" % uuid)
    assert "    xe vm-resume uuid=%s on=xs-a   # 90 left after" % uuid in details[3]
    assert api.VM.get_power_state(vm) == "Suspended"
    assert used(api, b) == 40
    run = hook_runs(api, "vm-pre-resume/50xsguard")[-1]
    assert run["exit_code"] == "2"
    assert decision_log(api, b, 1)[-1]["event"] == "resume_refused"


def test_resume_admitted_without_charging_its_domain_twice(api):
    """A resume onto exactly its need is admitted: the ports its new domain already holds are not counted twice."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 10)
    vm = running(api, "desk", a)
    api.VM.suspend(vm)
    api.VM.resume_on(vm, b, False, False)
    assert api.VM.get_power_state(vm) == "Running" and api.VM.get_resident_on(vm) == b
    assert used(api, b) == 50
    assert decision_log(api, b, 1)[-1]["event"] == "resume_admitted"
    assert api.sim.get_failures() == []


def test_start_refused_names_hosts_with_room(api):
    """A refused start names the other hosts where the VM fits, most room first, as commands to paste."""
    a = host_with_free(api, "xs-a", 5)
    host_with_free(api, "xs-b", 30)
    host_with_free(api, "xs-c", 70)
    host_with_free(api, "xs-d", 9)
    vm = make_vm(api, "app", **TEN)
    uuid = api.VM.get_uuid(vm)
    stdout = failure(api.VM.start_on, vm, a, False, False)[3]
    lines = stdout.split("\n")
    first = lines.index("- start it on a host with room now (most room first):")
    assert lines[first + 1:first + 3] == ["    xe vm-start uuid=%s on=xs-c   # 60 left after" % uuid,
                                          "    xe vm-start uuid=%s on=xs-b   # 20 left after" % uuid]
    assert lines[first + 3] == "- or shut down another VM on this host"


def test_start_refused_with_no_room_anywhere(api):
    """When no other host has room, the refusal says so."""
    a = host_with_free(api, "xs-a", 5)
    host_with_free(api, "xs-b", 9)
    vm = make_vm(api, "app", **TEN)
    assert "- no other host of the pool has room for it now" in failure(api.VM.start_on, vm, a, False, False)[3]


def test_cross_pool_migration_goes_on_unchecked(api):
    """A migration to another pool has no destination here: it goes on, logged as not checked."""
    a = host_with_free(api, "xs-a", 100)
    vm = running(api, "leaving", a)
    api.VM.migrate_send(vm, {"host": "OpaqueRef:elsewhere"}, True, {}, {}, {})
    assert api.VM.get_all_records_where('field "name__label" = "leaving"') == {}
    assert hook_runs(api, "vm-pre-migrate/50xsguard")[-1]["exit_code"] == "0"
    record = decision_log(api, a, 2)[-1]
    assert record["event"] == "migrate_not_checked" and "cross-pool" in record["why"]


def silence(api, host):
    """Remove xsguard's plugin from a host: its xsguard cannot answer."""
    os.remove(os.path.join(api.sim.get_host_root(host), "etc", "xapi.d", "plugins", "xsguard"))


def test_destination_not_answering_on_error_allow(api):
    """A destination whose xsguard does not answer, on_error = allow: the migration goes on, said loudly."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 100)
    vm = running(api, "web", a)
    silence(api, b)
    api.VM.pool_migrate(vm, b, {})
    assert api.VM.get_resident_on(vm) == b
    run = hook_runs(api, "vm-pre-migrate/50xsguard")[-1]
    assert run["exit_code"] == "1"
    assert run["stdout"].startswith("xsguard could not check the migrate of VM %s; let through unchecked"
                                    % api.VM.get_uuid(vm))
    assert "XENAPI_MISSING_PLUGIN" in run["stdout"]
    events = [r["event"] for r in decision_log(api, a, 3)]
    assert events[-2:] == ["guard_error", "migrate_unchecked"]
    assert alerts_about(api, api.VM.get_uuid(vm)) == ["XSGUARD_MIGRATION_UNCHECKED"]


def test_destination_not_answering_on_error_deny(api):
    """The same with on_error = deny: the migration is refused and the VM stays on the source."""
    a = small_host(api, "xs-a", port_limit=148, vcpus=4, config={"policy.on_error": "deny"})
    b = host_with_free(api, "xs-b", 100)
    vm = running(api, "web", a)
    silence(api, b)
    details = failure(api.VM.pool_migrate, vm, b, {})
    assert details[:2] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard"] and details[4] == "2"
    assert "xsguard could not check this migrate and is set to refuse when it fails" in details[3]
    assert api.VM.get_resident_on(vm) == a and used(api, b) == 40


def test_a_host_that_does_not_answer_in_time_is_left_out(api):
    """Other hosts are asked within the deadline: one slower than that is not named, the others are."""
    a = small_host(api, "xs-a", port_limit=53, vcpus=4, config={"policy.deadline": "2"})
    slow = host_with_free(api, "xs-b", 90)
    host_with_free(api, "xs-c", 30)
    plugin = os.path.join(api.sim.get_host_root(slow), "etc", "xapi.d", "plugins", "xsguard")
    with open(plugin, "w") as handle:
        handle.write("#!/bin/sh\nsleep 4\n")
    vm = make_vm(api, "app", **TEN)
    stdout = failure(api.VM.start_on, vm, a, False, False)[3]
    assert "    xe vm-start uuid=%s on=xs-c   # 20 left after" % api.VM.get_uuid(vm) in stdout
    assert "on=xs-b" not in stdout
    assert hook_runs(api, "vm-pre-start/50xsguard")[-1]["elapsed_ms"] < 2500


def test_denials_show_the_operation(api):
    """denials on the destination lists the migration it refused, with its operation; the source's lists none."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 9)
    vm = running(api, "db", a)
    failure(api.VM.pool_migrate, vm, b, {})
    decision_log(api, a, 2)
    decision_log(api, b, 1)

    def denials(host, *extra):
        conf = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
        return subprocess.run([sys.executable, "-m", "xsguard", "--config", conf, "denials"] + list(extra),
                              stdout=subprocess.PIPE, check=True).stdout.decode()

    assert json.loads(denials(a, "--json")) == []
    records = json.loads(denials(b, "--json"))
    assert [(r["event"], r["operation"], r["vm_name"], r["host_name"]) for r in records] == [
        ("migrate_refused", "migrate", "db", "xs-b")]
    summary = json.loads(denials(b, "--summary", "--json"))
    assert [(g["operation"], g["vm_name"], g["count"]) for g in summary] == [("migrate", "db", 1)]
    assert denials(b, "--summary").splitlines()[0].split() == [
        "hour", "(UTC)", "operation", "vm", "host", "refused", "ceiling"]
    table = denials(b).splitlines()
    assert table[0].split() == ["time", "(UTC)", "operation", "vm", "host", "need", "free", "ceiling"]
    assert table[1].split()[2:] == ["migrate", "db", "xs-b", "10", "9", "xen_ports"]


def guest_actions(api, host, domid):
    """The /proc/interrupts action names of one guest domain's ports in a host's dom0, in order."""
    path = os.path.join(api.sim.get_host_root(host), "proc", "interrupts")
    with open(path) as handle:
        lines = handle.read().splitlines()
    names = [line.split()[-1] for line in lines if "xen-dyn" in line or "xen-netback" in line
             or ("vif%s." % domid) in line]
    return [n for n in names if n.startswith("vif%s." % domid) or not n.startswith("vif")]


def test_sim_migration_binds_the_same_ports_on_the_destination(bare_api):
    """Without xsguard: a migrated domain binds on the destination what it held on the source, and
    the source releases them."""
    api = bare_api
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 100)
    vm = running(api, "web", a)
    old = api.VM.get_domid(vm)
    before = api.sim.get_dom0(a)["by_remote_domain"]
    api.VM.pool_migrate(vm, b, {})
    new = api.VM.get_domid(vm)
    assert new != old and before[old] in (10, "10")
    assert api.sim.get_dom0(b)["by_remote_domain"] == {new: before[old]}
    assert old not in api.sim.get_dom0(a)["by_remote_domain"]
    assert sorted(guest_actions(api, b, new)) == sorted(
        ["evtchn:oxenstored", "evtchn:xenconsoled"] + ["evtchn:qemu-system-i38"] * 3 + ["evtchn:tapdisk"]
        + ["vif%s.0-q%d-%s" % (new, q, d) for q in range(2) for d in ("tx", "rx")])
    assert api.VM.get_scheduled_to_be_resident_on(vm) == "OpaqueRef:NULL"


def test_sim_raises_what_xapi_raises(bare_api):
    """Migrating a halted VM, onto a disabled or full host, resuming a running VM: xapi's errors."""
    api = bare_api
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 100)
    halted = make_vm(api, "halted", **TEN)
    assert failure(api.VM.pool_migrate, halted, b, {})[::2] == ["VM_BAD_POWER_STATE", "running"]
    vm = running(api, "web", a)
    assert failure(api.VM.resume, vm, False, False)[::2] == ["VM_BAD_POWER_STATE", "suspended"]
    api.host.disable(b)
    assert failure(api.VM.pool_migrate, vm, b, {}) == ["HOST_DISABLED", b]
    assert failure(api.VM.start_on, halted, b, False, False) == ["HOST_DISABLED", b]
    api.host.enable(b)
    huge = make_vm(api, "huge", memory_gib=300, **TEN)
    assert failure(api.VM.start, huge, False, False)[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    big = running(api, "big", a, memory_gib=150)
    running(api, "other-big", b, memory_gib=150)
    assert failure(api.VM.pool_migrate, big, b, {})[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert api.VM.get_resident_on(big) == a


def test_sim_start_places_as_xapi_does(bare_api):
    """VM.start without a host: the affinity host if enabled with the memory, else an enabled host with it."""
    api = bare_api
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 100)
    first = make_vm(api, "first", affinity=a, **TEN)
    api.VM.start(first, False, False)
    assert api.VM.get_resident_on(first) == a
    api.host.disable(a)
    second = make_vm(api, "second", affinity=a, **TEN)
    api.VM.start(second, False, False)
    assert api.VM.get_resident_on(second) == b


def test_sim_evacuate_in_batches(bare_api):
    """host.evacuate(host, network, batch size) moves every VM off the host; the host keeps only dom0."""
    api = bare_api
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 100)
    vms = [running(api, "vm-%d" % i, a) for i in range(3)]
    api.host.evacuate(a, "OpaqueRef:NULL", "2")
    assert [api.VM.get_resident_on(vm) for vm in vms] == [b, b, b]
    assert api.host.get_resident_VMs(a) == [api.host.get_control_domain(a)]
    assert used(api, a) == 40 and used(api, b) == 70
