"""xsguard audit: each running VM's prediction next to what dom0 holds, through the plugin and the command.

Every expected figure is counted by hand from what each simulated guest binds (the simulator's
table): xenstore 1, console 1, QEMU V + 1 for HVM, 1 per tapdisk3 disk, 2 per netback queue,
1 per control ring.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.pool import decision_log, forbid_xapi_under_the_lock, make_vm, small_host, wait_for
from xsguard.model.need import LEARNED_HELD

# name: (predicted, held once connected, verdict)
EXPECTED = {
    "exact": (1 + 1 + 1 + 2, 1 + 1 + 1 + 2, "exact"),  # PV Linux, 1 vCPU, 1 disk, 1 NIC
    "ctrl": (1 + 1 + 2 + 1 + 2, 1 + 1 + 2 + 1 + 2 + 1, "under"),  # Linux HVM binding a control ring
    "greedy": (1 + 1 + 1 + 2, 1 + 1 + 1 + 16 * 2, "under"),  # PV Linux asking dom0's 16 queues
    "nodrv-ctrl": (1 + 1 + 2 + 1 + 2 + 1, 1 + 1 + 2 + 1 + 2, "over"),  # viridian HVM without the ring
    "slow": (1 + 1 + 1 + 2, 1 + 1, "pending"),  # drivers not connected yet
}
COVERS = {"ctrl": "[need] ctrl_ring = always (exact), [need] vif_queues = backend_max",
          "greedy": "[need] vif_queues = backend_max (exact)"}


@pytest.fixture
def pool(api, sim):
    """A 16-vCPU host running the five VMs of EXPECTED, each connected as it will be, and a leaked domain."""
    host = small_host(api, port_limit=1000, vcpus=16)
    vms = {
        "exact": make_vm(api, "exact", affinity=host),
        "ctrl": make_vm(api, "ctrl", hvm=True, affinity=host),
        "greedy": make_vm(api, "greedy", affinity=host),
        "nodrv-ctrl": make_vm(api, "nodrv-ctrl", hvm=True, windows=True, affinity=host),
        "slow": make_vm(api, "slow", affinity=host),
    }
    api.sim.set_guest(vms["ctrl"], {"ctrl_ring": "true"})
    api.sim.set_guest(vms["greedy"], {"queues": "16"})
    api.sim.set_guest(vms["slow"], {"connect_delay": "600"})
    for ref in vms.values():
        api.VM.start(ref, False, False)
    with sim.pool.lock:  # a dead domain whose backend never closed its ports
        sim.pool.hosts[host].dom0.bind(977, ["evtchn:oxenstored"] * 3)
        sim.pool.hosts[host].dom0.write_state()

    def connected():
        held = api.sim.get_dom0(host)["by_remote_domain"]
        return all(int(held.get(api.VM.get_domid(vms[n]), 0)) == EXPECTED[n][1] for n in vms)

    wait_for(connected)
    return host, vms


def call_audit(api, host):
    return json.loads(api.host.call_plugin(host, "xsguard", "audit", {}))


def run_xsguard(api, host, *args):
    conf = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
    proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", conf] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def figures(report):
    return {v["vm_name"]: (v["predicted"], v["held"], v["verdict"]) for v in report["vms"]}


def test_plugin_audit_verdicts(api, pool):
    """fn=audit: exact, under (a control ring; 16 queues), over and pending, each with its figures."""
    host, _ = pool
    report = call_audit(api, host)
    assert set(report) == {"host_name", "vms", "exact", "under", "over", "pending"}
    assert figures(report) == EXPECTED
    assert (report["exact"], report["under"], report["over"], report["pending"]) == (1, 2, 1, 1)
    assert report["host_name"] == "xs-a"
    vm = report["vms"][0]
    assert set(vm) == {"vm_uuid", "vm_name", "predicted", "held", "verdict", "breakdown", "cover"}
    assert sum(line["ports"] for line in vm["breakdown"]) == vm["predicted"]


def test_leaked_domain_is_nobody_s(api, pool):
    """A leaked domain's 3 ports are no VM's: the audit lists only the five running VMs, each at its own domain."""
    host, vms = pool
    report = call_audit(api, host)
    assert sorted(v["vm_uuid"] for v in report["vms"]) == sorted(api.VM.get_uuid(r) for r in vms.values())
    assert api.sim.get_dom0(host)["by_remote_domain"]["977"] == "3"
    assert figures(report)["exact"] == EXPECTED["exact"]


def test_command_audit_json_and_table(api, pool):
    """xsguard audit --json answers as the plugin does. The first audit kept what the two unders
    held in their records, so the second (the table) charges them that (exact) and still ends
    with what would cover each in the model."""
    host, _ = pool
    code, out, err = run_xsguard(api, host, "audit", "--json")
    assert code == 0, err
    assert figures(json.loads(out)) == EXPECTED
    code, out, err = run_xsguard(api, host, "audit")
    assert code == 0, err
    lines = out.rstrip("\n").splitlines()
    assert lines[0] == "host xs-a: 3 exact, 0 under, 1 over, 1 pending"
    assert lines[-2:] == ["%s holds more than the model predicts; would be covered by: %s" % (n, COVERS[n])
                          for n in sorted(COVERS)]
    greedy = next(line for line in lines if line.startswith("greedy "))
    assert greedy.split()[2:] == ["35", "35", "exact"]


def test_under_is_logged_and_counted(api, pool):
    """Each under is a decision-log record audit_under and one more in status's audit_under."""
    host, _ = pool
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["audit_under"] == 0
    call_audit(api, host)
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["audit_under"] == 2
    path = os.path.join(api.sim.get_host_root(host), "var", "log", "xsguard", "decisions.log")
    with open(path) as handle:
        records = [json.loads(line) for line in handle if '"audit_under"' in line]
    assert sorted((r["vm_name"], r["predicted"], r["held"], r["cover"]) for r in records) == [
        ("ctrl", 7, 8, COVERS["ctrl"]), ("greedy", 5, 35, COVERS["greedy"])]


def running_greedy(api, host):
    """A guest that asks for dom0's 16 queues, started on ``host`` and holding its 35 ports."""
    greedy = make_vm(api, "greedy", affinity=host)
    api.sim.set_guest(greedy, {"queues": "16"})
    api.VM.start(greedy, False, False)
    domid = api.VM.get_domid(greedy)
    wait_for(lambda: api.sim.get_dom0(host)["by_remote_domain"].get(domid) == "35")
    return greedy


def test_audit_enters_what_a_guest_held_in_the_ledger(bare_api):
    """A greedy guest running before xsguard came (so in no ledger): once audited (the figure it held
    learned and logged, its finding logged), its reboot is decided at 35."""
    api = bare_api
    host = small_host(api, port_limit=1000, vcpus=16)
    greedy = running_greedy(api, host)
    api.sim.install_xsguard(host)
    assert figures(call_audit(api, host)) == {"greedy": (5, 35, "under")}
    with open(os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json")) as handle:
        entry = json.load(handle)["entries"][0]
    assert (entry["vm_name"], entry["need"], entry["peak"], entry["how"]) == ("greedy", 5, 35, "audited")
    api.VM.clean_reboot(greedy)
    records = decision_log(api, host, 3)
    assert [r["event"] for r in records] == ["learned", "audit_under", "start_admitted"]
    assert (records[0]["vm_name"], records[0]["keys"]) == ("greedy", {LEARNED_HELD: "35"})
    assert records[2]["need"] == 35


def last_decision(api, host, vm_uuid):
    """The VM's second start decision (its reboot), once the hook's detached child has logged it."""
    path = os.path.join(api.sim.get_host_root(host), "var", "log", "xsguard", "decisions.log")

    def found():
        with open(path) as handle:
            records = [json.loads(line) for line in handle]
        mine = [r for r in records if r.get("vm_uuid") == vm_uuid and r["event"].startswith("start_")]
        return mine[1] if len(mine) >= 2 else None

    return wait_for(found)


def test_greedy_guest_charged_what_it_holds_without_an_audit(api):
    """A guest that asks for dom0's 16 queues: the next decision keeps its 35, and its reboot is decided at 35."""
    host = small_host(api, port_limit=1000, vcpus=16)
    greedy = running_greedy(api, host)
    api.VM.start(make_vm(api, "next", affinity=host), False, False)  # its decision settles the ledger
    api.VM.clean_reboot(greedy)
    record = last_decision(api, host, api.VM.get_uuid(greedy))
    assert record["need"] == 35
    assert {"consumer": "held beyond the model", "ports": 30} == {
        k: v for k, v in record["breakdown"][-1].items() if k != "why"}


def test_windows_known_by_its_guest_agent(api):
    """An HVM guest with only device_id whose agent names Windows: need and audit charge its control ring (8, exact)."""
    host = small_host(api, port_limit=1000, vcpus=16)
    win = make_vm(api, "win-agent", hvm=True, platform={"device_id": "0002"}, affinity=host)
    api.sim.set_guest(win, {"ctrl_ring": "true", "os_name": "Microsoft Windows Server 2019 Standard|C:\\\\Windows"})
    before = json.loads(api.host.call_plugin(host, "xsguard", "need", {"vm_uuid": api.VM.get_uuid(win)}))
    assert before["total"] == 1 + 1 + 2 + 1 + 2  # no guest metrics yet: no control ring
    api.VM.start(win, False, False)
    domid = api.VM.get_domid(win)
    wait_for(lambda: api.sim.get_dom0(host)["by_remote_domain"].get(domid) == "8")
    after = json.loads(api.host.call_plugin(host, "xsguard", "need", {"vm_uuid": api.VM.get_uuid(win)}))
    assert after["total"] == 1 + 1 + 2 + 1 + 2 + 1
    assert figures(call_audit(api, host)) == {"win-agent": (8, 8, "exact")}


def test_stale_guest_metrics_ref_reads_as_none(monkeypatch):
    """A guest-metrics record gone since the VM was read is no metrics; any other xapi error is raised."""
    from xsguard.deadline import Deadline
    from xsguard.errors import XapiFailure
    from xsguard.xapi import Xapi

    api = Xapi("local", Deadline(1.0))

    def gone(method, ref):
        raise XapiFailure("xapi refused HANDLE_INVALID", "HANDLE_INVALID", "VM_guest_metrics", ref)

    monkeypatch.setattr(api, "call", gone)
    assert api.guest_metrics({"guest_metrics": "OpaqueRef:5"}) is None
    assert api.guest_metrics({"guest_metrics": "OpaqueRef:NULL"}) is None

    def denied(method, ref):
        raise XapiFailure("xapi refused PERMISSION_DENIED", "PERMISSION_DENIED")

    monkeypatch.setattr(api, "call", denied)
    with pytest.raises(XapiFailure):
        api.guest_metrics({"guest_metrics": "OpaqueRef:5"})
    monkeypatch.setattr(api, "call", lambda method, ref: {"PV_drivers_detected": True})
    assert api.guest_metrics({"guest_metrics": "OpaqueRef:5"}) == {"PV_drivers_detected": True}


def test_audit_takes_no_argument(api):
    """fn=audit with an argument is XSGUARD_BAD_ARGUMENT naming it."""
    from tests.pool import failure

    host = small_host(api)
    details = failure(api.host.call_plugin, host, "xsguard", "audit", {"vm_uuid": "x"})
    assert details[0] == "XSGUARD_BAD_ARGUMENT" and details[-1] == "vm_uuid"


def test_audit_makes_no_xapi_call_under_the_lock(api, pool, monkeypatch):
    """Charging the unders' peaks reads xapi before the ledger's lock, as a decision gathers: a charge of
    unknown need pending before the audit is completed from xapi (its need), one appended between that
    reading and the lock is charged the largest figure known (what a VM here holds), and a Xapi that fails
    while the lock is held is never called."""

    from xsguard import audit, config, ledger, state
    from xsguard.deadline import Deadline
    from xsguard.model.charging import HOW_UNCHECKED, Entry
    from xsguard.xapi import Xapi

    host, vms = pool
    cfg = config.load(os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))
    boot_id = state.boot_id(cfg)
    path = cfg.ledger.path

    late = make_vm(api, "late", affinity=host)  # in no charge the audit read: its need is not known

    def unknown(name, ref=None):
        return Entry(api.VM.get_uuid(ref or vms[name]), name, ledger.UNKNOWN_NEED, state.now(), None, HOW_UNCHECKED)

    ledger.append_charge(path, boot_id, unknown("exact"))
    forbid_xapi_under_the_lock(monkeypatch, lambda _: ledger.append_charge(path, boot_id, unknown("late", late)))
    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        report = audit.audit(cfg, xs, Deadline(5))
    assert report.as_json()["under"] == 2
    entries = ledger.load(path, boot_id).entries
    assert entries is not None
    by_name = {e.vm_name: e for e in entries.values()}
    assert by_name["exact"].need == EXPECTED["exact"][0]
    assert by_name["late"].need == max(h for _, h, _ in EXPECTED.values())  # the greedy guest's 35
    assert (by_name["greedy"].peak, by_name["ctrl"].peak) == (EXPECTED["greedy"][1], EXPECTED["ctrl"][1])
