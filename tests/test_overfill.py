"""A migration's destination never overfills, whatever happens at the source: a destination that
does not answer, a migration slower than the ledger's ttl, a guest holding more than the model
predicts, a destination too loaded to answer in time. Each on the simulated pool; the truth is
the simulator's dom0, whose binds fail (``error 28``) when a host holds more than it can."""

import fcntl
import json
import os
import sys
import threading
import time
from typing import Any, List, Optional

import pytest
import XenAPI

from tests.pool import connect, decision_log, failure, make_vm, small_host, wait_for
from tests.test_migrate import TEN, hook_runs, host_with_free, ledger_entries, running, used

OLD_PLUGIN = """#!%s
# an xsguard from before admit: XenAPIPlugin.dispatch answers a function it lacks so
# (xen-api python3/examples/XenAPIPlugin.py dispatch)
import sys
import xmlrpc.client
_, method = xmlrpc.client.loads(sys.argv[1])
print(xmlrpc.client.dumps(({"Status": "Failure",
                            "ErrorDescription": ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", method]},), "", True))
""" % sys.executable


def plugin_path(api, host):
    return os.path.join(api.sim.get_host_root(host), "etc", "xapi.d", "plugins", "xsguard")


def slow_migrations_from(api, host, seconds):
    """A third-party vm-pre-migrate hook after xsguard's: the migration moves ``seconds`` later."""
    path = os.path.join(api.sim.get_host_root(host), "etc", "xapi.d", "vm-pre-migrate", "60slow")
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\nsleep %s\n" % seconds)
    os.chmod(path, 0o755)


class Unanswering:
    """A destination's xsguard that cannot answer, in one of the ways it happens; ``restore`` ends it."""

    def __init__(self, api, host, how):
        self.path = plugin_path(api, host)
        self.how = how
        self.lock = None
        with open(self.path) as handle:
            self.original = handle.read()
        if how == "loaded":  # its decisions queue behind a lock held longer than the source waits
            ledger = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json.lock")
            self.lock = os.open(ledger, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            return
        if how == "missing":  # a rolling install: the plugin not there yet
            os.remove(self.path)
            return
        text = {"slow": "#!/bin/sh\nsleep 4\n", "garbage": "#!/bin/sh\necho garbage\n", "old": OLD_PLUGIN}[how]
        with open(self.path, "w") as handle:
            handle.write(text)
        os.chmod(self.path, 0o755)

    def restore(self):
        if self.lock is not None:
            os.close(self.lock)
            return
        with open(self.path, "w") as handle:
            handle.write(self.original)
        os.chmod(self.path, 0o755)


def in_background(sim, method, *args):
    """Run a XenAPI call on its own session in a thread; join() returns its error details, None if it succeeded."""
    outcome = {}

    def run():
        session = connect(sim.url)
        fn = session.xenapi
        for part in method.split("."):
            fn = getattr(fn, part)
        try:
            fn(*args)
        except XenAPI.Failure as exc:
            outcome["error"] = exc.details
        finally:
            session.xenapi.session.logout()

    thread = threading.Thread(target=run)
    thread.start()

    def join():
        thread.join(60)
        assert not thread.is_alive()
        return outcome.get("error")

    return join


def source_hook_done(api, vm):
    uuid = api.VM.get_uuid(vm)
    return wait_for(lambda: [r for r in hook_runs(api, "vm-pre-migrate/50xsguard") if r["vm"] == uuid], 30)[-1]


@pytest.mark.parametrize("how", ["missing", "slow", "old", "garbage", "loaded"])
def test_a_migration_let_through_unanswered_is_charged_at_the_destination(api, sim, how):
    """The destination does not answer (plugin missing, slower than the source waits, an xsguard
    without admit, garbage, or its decisions queued behind its lock): the source lets the migration
    through (on_error = allow, exit 1), marking the VM's record for the destination; while it is under
    way the destination charges it at once, so of two more migrations onto room for two in all one is
    refused, and no device fails there."""
    a = small_host(api, "xs-a", port_limit=148, vcpus=4, config={"policy.deadline": "2"})  # 100 free
    b = small_host(api, "xs-b", port_limit=40 + 25, vcpus=4, margin=0)  # dom0 holds no more than 25 more
    c = host_with_free(api, "xs-c", 100)
    slow_migrations_from(api, a, 5)
    first = running(api, "first", a)
    others = [running(api, "other-%d" % i, c) for i in range(2)]
    broken = Unanswering(api, b, how)
    join = in_background(sim, "VM.pool_migrate", first, b, {})
    try:
        run = source_hook_done(api, first)
    finally:
        broken.restore()
    assert run["exit_code"] == "1" and "let through unchecked" in run["stdout"]
    assert "charged at once by the destination" in run["stdout"]
    results: List[Optional[List[Any]]] = [None, None]  # each migration's failure
    for i, vm in enumerate(others):
        try:
            api.VM.pool_migrate(vm, b, {})
        except XenAPI.Failure as exc:
            results[i] = exc.details
    error = join()
    assert api.sim.get_failures() == []
    assert error is None and api.VM.get_resident_on(first) == b
    assert results[0] is None and results[1] is not None
    assert results[1][:2] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard"]
    assert used(api, b) == 40 + 20


def test_a_migration_let_through_unanswered_is_charged_once_past_a_decision_s_span(api, sim):
    """The destination's plugin is missing (a rolling install): the source lets the migration through;
    once a decision there has seen it arriving for longer than a decision may last, every later
    decision charges it, so a migration onto the room it takes is refused, and no device fails."""
    from xsguard.commit import decision_span
    from xsguard.config import defaults

    a = small_host(api, "xs-a", port_limit=148, vcpus=4, config={"policy.deadline": "2"})
    b = small_host(api, "xs-b", port_limit=40 + 25, vcpus=4, margin=0)
    c = host_with_free(api, "xs-c", 100)
    span = decision_span(defaults())
    slow_migrations_from(api, a, span + 8)
    first = running(api, "first", a)
    others = [running(api, "other-%d" % i, c) for i in range(2)]
    missing = Unanswering(api, b, "missing")
    join = in_background(sim, "VM.pool_migrate", first, b, {})
    try:
        assert source_hook_done(api, first)["exit_code"] == "1"
    finally:
        missing.restore()
    api.VM.pool_migrate(others[0], b, {})  # sees the first arriving: not charged yet, its decision may come
    time.sleep(span + 1)
    details = failure(api.VM.pool_migrate, others[1], b, {})
    assert details[:2] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard"]
    assert join() is None and api.VM.get_resident_on(first) == b
    assert api.sim.get_failures() == []
    assert used(api, b) == 40 + 20


def test_a_migration_slower_than_the_ttl_keeps_its_charge(api, sim):
    """A migration admitted at the destination takes longer than [ledger] ttl: while xapi shows it
    arriving, the destination still charges it, and a start onto the room it took is refused."""
    a = host_with_free(api, "xs-a", 100)
    b = small_host(api, "xs-b", port_limit=40 + 15, vcpus=4, margin=0, config={"ledger.ttl": "1"})
    slow_migrations_from(api, a, 4)
    moving = running(api, "moving", a)
    join = in_background(sim, "VM.pool_migrate", moving, b, {})
    assert source_hook_done(api, moving)["exit_code"] == "0"
    wait_for(lambda: decision_log(api, b, 1))
    late = make_vm(api, "late", **TEN)
    time.sleep(1.5)  # past the ttl, the migration still under way
    assert api.VM.get_scheduled_to_be_resident_on(moving) == b
    try:
        api.VM.start_on(late, b, False, False)
        details = None
    except XenAPI.Failure as exc:
        details = exc.details
    error = join()
    assert api.sim.get_failures() == []
    assert details is not None and details[:2] == ["XAPI_HOOK_FAILED", "vm-pre-start/50xsguard"]
    assert error is None and api.VM.get_resident_on(moving) == b


def big_queue_guest(api, host):
    """A 1-vCPU Linux PV guest whose netfront asks for 16 queues on a 16-vCPU dom0: the model predicts
    5 ports (xenstore, console, a disk, 1 queue x 2), the guest's own table binds 35 (16 queues x 2)."""
    vm = make_vm(api, "greedy", vcpus=1, disks=1, nics=1, affinity=host)
    api.sim.set_guest(vm, {"queues": "16"})
    api.VM.start_on(vm, host, False, False)
    wait_for(lambda: int(api.sim.get_dom0(host)["by_remote_domain"].get(api.VM.get_domid(vm), 0)) == 35)
    return vm


BASE_16 = 112  # what a simulated 16-vCPU dom0 holds before any guest


def test_a_guest_holding_more_than_predicted_is_charged_what_it_holds(api):
    """The source measures what the domain holds (35) and the destination charges that, not the model's
    5: with 20 free the migration is refused, nothing binds there, no device fails."""
    a = small_host(api, "xs-a", port_limit=BASE_16 + 8 + 100, vcpus=16)
    b = small_host(api, "xs-b", port_limit=BASE_16 + 8 + 20, vcpus=16)
    vm = big_queue_guest(api, a)
    need = json.loads(api.host.call_plugin(b, "xsguard", "need", {"vm_uuid": api.VM.get_uuid(vm)}))["total"]
    assert need == 5
    details = failure(api.VM.pool_migrate, vm, b, {})
    assert details[:2] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard"] and details[4] == "2"
    assert "it needs 35 dom0 event channels; 20 are left" in details[3]
    assert api.VM.get_resident_on(vm) == a and used(api, b) == BASE_16
    refusal = decision_log(api, b, 1)[-1]
    assert (refusal["event"], refusal["need"], refusal["held_on_source"]) == ("migrate_refused", 35, 35)
    assert ["held on the source", 30] in [[line["consumer"], line["ports"]] for line in refusal["breakdown"]]
    assert api.sim.get_failures() == []


def test_a_guest_holding_more_than_predicted_is_admitted_at_what_it_holds(api):
    """With room for it, the destination records the arriving VM at what it held on the source."""
    a = small_host(api, "xs-a", port_limit=BASE_16 + 8 + 100, vcpus=16)
    b = small_host(api, "xs-b", port_limit=BASE_16 + 8 + 40, vcpus=16)
    vm = big_queue_guest(api, a)
    api.VM.pool_migrate(vm, b, {})
    entry = ledger_entries(api, b)[api.VM.get_uuid(vm)]
    assert (entry["need"], entry["peak"]) == (35, 35)
    wait_for(lambda: used(api, b) == BASE_16 + 35)
    assert api.sim.get_failures() == []


def test_a_loaded_destination_answers_within_the_source_s_time(api):
    """The destination's decisions wait behind its ledger lock: it gives up within the time the
    source has left (less the way back), so the source hears why before its own deadline, and
    the destination never records a verdict after the source gave up."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 100)
    vm = running(api, "web", a)
    loaded = Unanswering(api, b, "loaded")
    try:
        api.VM.pool_migrate(vm, b, {})
        run = source_hook_done(api, vm)
    finally:
        loaded.restore()
    assert run["exit_code"] == "1" and run["elapsed_ms"] < 5000
    assert "XSGUARD_DEADLINE_EXCEEDED waited" in run["stdout"]  # the destination's own words
    failed = decision_log(api, b, 1)[-1]
    assert (failed["event"], failed["error"], failed["reason"], failed["charged"]) == (
        "migrate_admit_failed", "XSGUARD_DEADLINE_EXCEEDED", "destination", "charged its need of 10")
    assert float(failed["source_time_left"]) < 5
    records = decision_log(api, a, 3)
    assert [r["event"] for r in records] == ["start_admitted", "guard_error", "migrate_unchecked"]
    told = records[-1]
    assert (told["event"], told["exit"], told["host_name"]) == ("migrate_unchecked", 1, "xs-b")
    assert not os.path.exists(os.path.join(api.sim.get_host_root(b), "var", "lib", "xsguard", "ledger.json"))
