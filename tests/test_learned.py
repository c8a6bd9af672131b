"""What xsguard learned about a VM while it ran is charged at its next start, on any host, and
its owner cannot lower it.

Every expected figure is counted by hand from what each simulated guest binds (the simulator's
table): xenstore 1, console 1, QEMU V + 1 for HVM, 1 per tapdisk3 disk, 2 per netback queue,
1 per control ring.
"""

import json
from contextlib import contextmanager

from tests.pool import decision_log, make_vm, small_host, wait_for
from xsguard.model.need import LEARNED, LEARNED_HELD, LEARNED_OS
from xsguard.sim.store import NULL

WINDOWS = "Microsoft Windows Server 2019 Standard|C:\\\\Windows|\\\\Device\\\\Harddisk0\\\\Partition2"


def audit(api, host):
    return json.loads(api.host.call_plugin(host, "xsguard", "audit", {}))


def need(api, host, vm):
    return json.loads(api.host.call_plugin(host, "xsguard", "need", {"vm_uuid": api.VM.get_uuid(vm)}))


def run_until_held(api, host, vm, ports):
    api.VM.start_on(vm, host, False, False)
    domid = api.VM.get_domid(vm)
    wait_for(lambda: api.sim.get_dom0(host)["by_remote_domain"].get(domid) == str(ports))


def shut_down_as_xapi_starts(sim, api, vm):
    """Shut the VM down and delete its guest metrics, as xapi's VM.start does before the hook runs
    (xen-api ocaml/xapi/xapi_vm.ml:338, ``delete_guest_metrics``): the next start's hook finds none
    whether or not the simulator deletes them itself."""
    api.VM.hard_shutdown(vm)
    with sim.pool.lock:
        record = sim.pool.vm(vm)
        if record["guest_metrics"] != NULL:
            sim.pool.store.destroy("VM_guest_metrics", record["guest_metrics"])
            record["guest_metrics"] = NULL


def start_decision(api, host, vm, count):
    """The VM's last start decision on the host, once the host's log holds ``count`` records."""
    records = decision_log(api, host, count)
    uuid = api.VM.get_uuid(vm)
    return [r for r in records if r.get("vm_uuid") == uuid and r["event"].startswith("start_")][-1]


def vif_why(breakdown):
    return next(line["why"] for line in breakdown if line["consumer"] == "vif 0")


def test_windows_seen_running_is_charged_its_control_ring_at_its_next_start(sim, api):
    """A Windows HVM guest without viridian (device_id only), seen running with its agent naming
    Windows: its next start, guest metrics gone, is decided at 8 with the control ring, naming
    what its agent said when it last ran; without what was learned it would be 7."""
    host = small_host(api, port_limit=1000, vcpus=16)
    win = make_vm(api, "win", hvm=True, platform={"device_id": "0002"})
    api.sim.set_guest(win, {"ctrl_ring": "true", "os_name": WINDOWS})
    run_until_held(api, host, win, 1 + 1 + 2 + 1 + 2 + 1)
    assert audit(api, host)["exact"] == 1
    assert api.VM.get_other_config(win)[LEARNED_OS] == "Microsoft Windows Server 2019 Standard"
    shut_down_as_xapi_starts(sim, api, win)
    assert api.VM.get_guest_metrics(win) == NULL
    api.VM.start_on(win, host, False, False)
    record = start_decision(api, host, win, 3)  # its first start, what audit learned, its second start
    assert (record["event"], record["need"]) == ("start_admitted", 8)
    assert vif_why(record["breakdown"]).endswith("(Windows: its guest agent said so when it last ran "
                                                 "(other_config:%s))" % LEARNED_OS)
    shut_down_as_xapi_starts(sim, api, win)
    api.VM.remove_from_other_config(win, LEARNED_OS)
    assert need(api, host, win)["total"] == 7


def test_greedy_guest_is_charged_what_it_held_on_another_host(sim, api):
    """A guest that took dom0's 16 queues on xs-a (35 where 5 is predicted), once audited there,
    is decided at 35 on xs-b, whose ledger never saw it; the breakdown names the learned figure."""
    a = small_host(api, "xs-a", port_limit=1000, vcpus=16)
    b = small_host(api, "xs-b", port_limit=1000, vcpus=16)
    greedy = make_vm(api, "greedy")
    api.sim.set_guest(greedy, {"queues": "16"})
    run_until_held(api, a, greedy, 35)
    report = audit(api, a)
    assert (report["vms"][0]["predicted"], report["vms"][0]["verdict"]) == (5, "under")
    assert api.VM.get_other_config(greedy)[LEARNED_HELD] == "35"
    learned_records = [r for r in decision_log(api, a, 3) if r["event"] == "learned"]
    assert [r["keys"] for r in learned_records] == [{LEARNED_HELD: "35"}]
    shut_down_as_xapi_starts(sim, api, greedy)
    api.VM.start_on(greedy, b, False, False)
    record = start_decision(api, b, greedy, 1)
    assert (record["event"], record["need"]) == ("start_admitted", 35)
    learned = [line for line in record["breakdown"] if line["consumer"] == LEARNED]
    assert [line["ports"] for line in learned] == [30]
    assert "other_config:%s" % LEARNED_HELD in learned[0]["why"]
    again = audit(api, b)["vms"][0]  # held 35 where 35 is charged: exact, nothing written again
    assert (again["predicted"], again["held"], again["verdict"]) == (35, 35, "exact")


def test_an_owner_writing_lower_figures_cannot_lower_the_need(api):
    """A VM whose need is 8 (viridian HVM, 1 vCPU, 1 disk, 1 NIC, control ring): figures its owner
    writes below it, unreadable or naming Linux change nothing; a higher one raises it."""
    host = small_host(api, port_limit=1000, vcpus=16)
    win = make_vm(api, "win", hvm=True, windows=True)
    assert need(api, host, win)["total"] == 1 + 1 + 2 + 1 + 2 + 1
    for held, said in (("3", "Debian GNU/Linux 12"), ("-40", "linux"), ("eight", ""), ("\u00b2", "")):
        for key, value in ((LEARNED_HELD, held), (LEARNED_OS, said)):
            api.VM.remove_from_other_config(win, key)
            api.VM.add_to_other_config(win, key, value)
        assert need(api, host, win)["total"] == 8, (held, said)
    api.VM.remove_from_other_config(win, LEARNED_HELD)
    api.VM.add_to_other_config(win, LEARNED_HELD, "12")
    assert need(api, host, win)["total"] == 12


def test_learner_writes_a_new_maximum_once_and_asks_xapi_only_when_a_domain_changed(sim, api):
    """What xsguard-rrdd would call at every reading: the greedy guest's 35 and the Windows agent's
    name are written at the first look; a second look with nothing new in dom0 makes no xapi call;
    a domain holding something new (a restart) is looked at again and, its figure known, writes nothing."""
    from xsguard import config, learn
    from xsguard.deadline import Deadline
    from xsguard.model.charging import here_from_records
    from xsguard.xapi import Xapi

    host = small_host(api, port_limit=1000, vcpus=16)
    greedy = make_vm(api, "greedy")
    api.sim.set_guest(greedy, {"queues": "16"})
    run_until_held(api, host, greedy, 35)
    win = make_vm(api, "win", hvm=True, platform={"device_id": "0002"})
    api.sim.set_guest(win, {"ctrl_ring": "true", "os_name": WINDOWS})
    run_until_held(api, host, win, 8)
    learner = learn.Learner(config.load(sim.pool.hosts[host].config_path))

    def look():
        records = {r["uuid"]: r for r in api.VM.get_all_records().values()}
        dom0 = {int(d): int(n) for d, n in api.sim.get_dom0(host)["by_remote_domain"].items()}
        control = next(r for r in records.values() if r["is_control_domain"] and r["resident_on"] == host)
        with Xapi(sim.url, Deadline(10.0)) as session:
            calls = len(sim.pool.calls)
            found = learner.observe(session, here_from_records(records, host), dom0, control, {})
            return found, len(sim.pool.calls) - calls

    found, calls = look()
    assert sorted((f["vm_name"], f["keys"]) for f in found) == [
        ("greedy", {LEARNED_HELD: "35"}), ("win", {LEARNED_OS: "Microsoft Windows Server 2019 Standard"})]
    assert calls > 0
    assert look() == ([], 0)
    shut_down_as_xapi_starts(sim, api, greedy)
    run_until_held(api, host, greedy, 35)
    found, calls = look()
    assert (found, calls > 0) == ([], True)


@contextmanager
def daemon_reader(sim, host):
    """xsguard-rrdd's reading of the host, run in the test (no xcp-rrdd needed for its figures)."""
    from xsguard import config
    from xsguard.rrdd import Reader

    reader = Reader(config.load(sim.pool.hosts[host].config_path))
    try:
        yield reader
    finally:
        reader.view.drop()


def daemon_calls(sim, method):
    return sum(1 for originator, called, _ in sim.pool.calls if originator == "xsguard-rrdd" and called == method)


def test_xsguard_rrdd_writes_what_a_guest_held_beyond_its_need_without_an_audit(sim, api, capsys):
    """The greedy guest (35 held, 5 predicted) gets its 35 written by xsguard-rrdd's first reading,
    with one journal line; a second reading, dom0 unchanged, writes nothing more and asks xapi nothing."""
    host = small_host(api, port_limit=1000, vcpus=16)
    greedy = make_vm(api, "greedy")
    api.sim.set_guest(greedy, {"queues": "16"})
    run_until_held(api, host, greedy, 35)
    assert LEARNED_HELD not in api.VM.get_other_config(greedy)
    with daemon_reader(sim, host) as reader:
        reader.read()
        assert api.VM.get_other_config(greedy)[LEARNED_HELD] == "35"
        assert daemon_calls(sim, "VM.add_to_other_config") == 1
        calls = len(sim.pool.calls)
        reader.read()
        assert sim.pool.calls[calls:] == []
    assert capsys.readouterr().err.count("learned for VM %s (greedy): %s=35" % (api.VM.get_uuid(greedy),
                                                                               LEARNED_HELD)) == 1
    assert [r for r in decision_log(api, host, 1) if r["event"] == "learned"] == []  # no audit ran


def test_a_write_xsguard_rrdd_cannot_make_is_one_journal_line_and_no_lost_reading(sim, api, monkeypatch, capsys):
    """xapi refusing the write (the VM gone meanwhile): every reading still gives its figures, the
    failure is one journal line however many readings meet it, and the write is made once xapi takes it."""
    from xsguard.errors import XapiFailure
    from xsguard.rrdd import DaemonXapi

    host = small_host(api, port_limit=1000, vcpus=16)
    greedy = make_vm(api, "greedy")
    api.sim.set_guest(greedy, {"queues": "16"})
    run_until_held(api, host, greedy, 35)
    real = DaemonXapi.call
    refusing = {"on": True}

    def call(self, method, *args):
        if method == "VM.add_to_other_config" and refusing["on"]:
            raise XapiFailure("xapi refused VM.add_to_other_config: HANDLE_INVALID", "HANDLE_INVALID", "VM")
        return real(self, method, *args)

    monkeypatch.setattr(DaemonXapi, "call", call)
    with daemon_reader(sim, host) as reader:
        for _ in range(3):
            names = {s.name for s in reader.read()}
            assert {"xsguard_ports_used", "xsguard_ports_free", "xsguard_ports_held"} <= names
        err = capsys.readouterr().err
        assert err.count("not written (xapi refused VM.add_to_other_config: HANDLE_INVALID)") == 1
        assert "Traceback" not in err
        assert LEARNED_HELD not in api.VM.get_other_config(greedy)
        refusing["on"] = False
        reader.read()
        assert api.VM.get_other_config(greedy)[LEARNED_HELD] == "35"
