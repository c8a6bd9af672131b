"""Commit: the decision under the ledger's lock makes no xapi call, and its status stands whatever
happens after it (a slow fsync, the journal)."""

import os

from tests.pool import forbid_xapi_under_the_lock, make_vm, small_host
from tests.test_hook import fill


def host_config(api, host):
    from xsguard import config

    return config.load(os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))


def test_no_xapi_call_is_made_under_the_lock(api, monkeypatch):
    """A charge of unknown need (a start let through on error) appears between the decision's reading
    and the lock: the decision still makes no xapi call under the lock (a Xapi that fails while the lock
    is held), and charges that VM at the largest need it knows of."""
    from xsguard import ledger, state
    from xsguard.deadline import Deadline
    from xsguard.decision import admit
    from xsguard.model.charging import HOW_UNCHECKED, Entry
    from xsguard.xapi import Xapi

    host = small_host(api, port_limit=4095)
    fill(api, host, 2, vcpus=2, hvm=True, disks=1, nics=1)
    late = make_vm(api, "late", vcpus=4, hvm=True, disks=2, nics=2, affinity=host)
    candidate = make_vm(api, "candidate", affinity=host)
    cfg = host_config(api, host)
    def late_charge(path):  # a start let through on error, charged just before the lock
        ledger.append_charge(path, state.boot_id(cfg), Entry(api.VM.get_uuid(late), "late", ledger.UNKNOWN_NEED,
                                                               state.now(), None, HOW_UNCHECKED))

    forbid_xapi_under_the_lock(monkeypatch, late_charge)
    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        outcome = admit(cfg, xs, api.VM.get_uuid(candidate), Deadline(5))
    assert outcome.verdict.verdict == "admit"
    promised = {p.vm_name: p.owed for p in outcome.promises}
    assert promised["late"] == max(promised.values()) == 10  # the largest need it knows: a 'fill' VM's


def test_a_slow_fsync_after_the_decision_does_not_change_it(api, monkeypatch):
    """The ledger's flush runs after the status is out: an fsync so slow that the deadline's alarm rings
    during it (DeadlineExceeded) leaves the admission an admission (exit 0, start_admitted), never
    on_error's exit 1 with a false 'unchecked' alert and a second charge."""
    from tests.test_hook import hook_in_process
    from xsguard.errors import DeadlineExceeded

    host = small_host(api, port_limit=4095)

    def slow_fsync(fd):
        raise DeadlineExceeded("xsguard ran past its deadline")  # what the alarm raises mid-fsync

    monkeypatch.setattr(os, "fsync", slow_fsync)
    status, records = hook_in_process(api, host, make_vm(api, "a", affinity=host), monkeypatch)
    assert status == 0
    events = [r["event"] for r in records]
    assert events[0] == "start_admitted" and "start_unchecked" not in events and "guard_error" not in events
    pending = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json.pending")
    assert not os.path.exists(pending)
