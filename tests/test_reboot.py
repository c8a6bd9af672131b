"""Reboots do no harm: xenopsd runs vm-pre-start for a reboot after the old domain is gone, while
xapi still shows the VM Running here under its old domid (xapi-contract.md, section 1)."""

import fcntl
import json
import os
import threading
from contextlib import contextmanager

import pytest

from tests.pool import connect, decision_log, failure, make_vm, small_host, wait_for
from tests.test_hook import fill, hook_runs

NULL = "OpaqueRef:NULL"


def full_host(api, **config):
    """A host with 52 ports for guests: 5 VMs of 10 and 'web' (10), 2 left; every driver connected."""
    host = small_host(api, port_limit=100, vcpus=4, config=config)
    fill(api, host, 4, vcpus=2, hvm=True, disks=1, nics=1)
    web = make_vm(api, "web", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)
    api.VM.start(web, False, False)
    wait_for(lambda: int(api.sim.get_dom0(host)["ports_used"]) == 40 + 50)
    return host, web


@contextmanager
def ledger_lock_held(api, host):
    """Hold the host's ledger lock, so that its hooks wait in the middle of their decision."""
    path = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def reboot_in_the_background(sim, vm):
    """VM.clean_reboot from a thread with its own session; what it raised, if anything, in ``done``."""
    done = {}

    def run():
        try:
            done["result"] = connect(sim.url).xenapi.VM.clean_reboot(vm)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            done["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


def host_config(api, host):
    from xsguard import config

    return config.load(os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))


@pytest.mark.parametrize("how", ["clean_reboot", "hard_reboot"])
def test_a_reboot_over_a_ceiling_goes_ahead_and_is_logged_counted_and_alerted(api, how):
    """A running VM whose prediction rose ([need] extra_per_vm, as an audit may advise) no longer fits
    when it reboots: by default it is admitted and charged, never left halted; the decision log says
    start_admitted_over_ceiling, syslog and a xapi alert say so, and status counts it."""
    host, web = full_host(api)
    api.sim.set_xsguard_config(host, {"need.extra_per_vm": "10"})  # web now needs 20, 12 free once it is gone
    getattr(api.VM, how)(web)
    assert api.VM.get_power_state(web) == "Running"
    assert hook_runs(api)[-1]["exit_code"] == "0"
    record = decision_log(api, host, 6)[-1]
    assert (record["event"], record["vm_name"], record["need"], record["verdict"]) == (
        "start_admitted_over_ceiling", "web", 20, "refuse")
    line = wait_for(lambda: [s for s in api.sim.get_syslog(host) if "admitted the reboot of VM 'web'" in s])
    assert "[policy] reboot = admit" in line[0]
    alerts = wait_for(lambda: [m for m in api.message.get_all_records().values()
                               if m["name"] == "XSGUARD_REBOOT_OVER_CEILING"])
    assert alerts[0]["obj_uuid"] == api.VM.get_uuid(web)
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert (status["over_ceiling"], status["refused"]) == (1, 0)


def test_reboot_check_refuses_a_reboot_that_does_not_fit(api):
    """[policy] reboot = check: the reboot is decided as a start, refused, and the VM is left halted
    (the operator chose a refusal over a host over its ceiling)."""
    host, web = full_host(api, **{"policy.reboot": "check"})
    api.sim.set_xsguard_config(host, {"need.extra_per_vm": "10"})
    details = failure(api.VM.clean_reboot, web)
    assert (details[0], details[2], details[4]) == ("XAPI_HOOK_FAILED", "none", "2")
    assert api.VM.get_power_state(web) == "Halted"
    assert decision_log(api, host, 6)[-1]["event"] == "start_refused"


def test_while_the_reboot_hook_runs_xapi_shows_the_vm_running_here_under_its_old_domid(api, sim):
    """The simulator's reboot, as xapi shows it: pre-start with -reason none after the old domain is gone
    from dom0, the VM Running, resident_on this host, its old domid, scheduled_to_be_resident_on NULL."""
    host, web = full_host(api)
    old = api.VM.get_domid(web)
    with ledger_lock_held(api, host):
        thread, done = reboot_in_the_background(sim, web)
        wait_for(lambda: old not in api.sim.get_dom0(host)["by_remote_domain"])
        record = api.VM.get_record(web)
        assert (record["power_state"], record["resident_on"], record["domid"],
                record["scheduled_to_be_resident_on"]) == ("Running", host, old, NULL)
    thread.join(30)
    assert "error" not in done
    assert hook_runs(api)[-1]["reason"] == "none"
    assert api.VM.get_power_state(web) == "Running" and api.VM.get_domid(web) != old


def test_a_start_decided_while_a_vm_reboots_charges_the_rebooting_vm(api, sim):
    """A start decided while another VM reboots (its old domain gone, xapi still showing it Running
    here) counts that VM's whole need: the start is refused and the reboot keeps its room."""
    from xsguard import ledger, state
    from xsguard.deadline import Deadline
    from xsguard.decision import evaluate
    from xsguard.xapi import Xapi

    host, web = full_host(api)
    late = make_vm(api, "late", vcpus=2, hvm=True, disks=1, nics=1, affinity=host)  # 10: fits only if web is gone
    cfg = host_config(api, host)
    path, boot = cfg.ledger.path, state.boot_id(cfg)
    entries = ledger.load(path, boot).entries
    assert entries is not None
    del entries[api.VM.get_uuid(web)]  # its domain held its whole need long enough: it left the ledger
    ledger.save(path, boot, entries)
    old = api.VM.get_domid(web)
    with ledger_lock_held(api, host):
        thread, done = reboot_in_the_background(sim, web)
        wait_for(lambda: old not in api.sim.get_dom0(host)["by_remote_domain"])
        with Xapi(cfg.xapi.url, Deadline(5)) as xs:
            outcome = evaluate(cfg, xs, api.VM.get_uuid(late), Deadline(5))
    thread.join(30)
    assert "error" not in done
    assert outcome.verdict.verdict == "refuse"
    assert [(p.vm_name, p.held, p.owed) for p in outcome.promises] == [("web", 0, 10)]
    assert api.VM.get_power_state(web) == "Running"
    assert failure(api.VM.start, late, False, False)[0] == "XAPI_HOOK_FAILED"
