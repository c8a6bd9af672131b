"""xsguard pool, place and evacuate, and need/check --host, run from a workstation against the simulated pool."""

import json
import os

from tests.pool import TEN, host_with_free, make_vm, running


def plugin(api, host, fn, **args):
    return json.loads(api.host.call_plugin(host, "xsguard", fn, args))


def test_pool_lists_every_host_as_its_status_says(api, workstation):
    """pool --json: each host's figures, the same as its own status; a silent host is unreachable."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 30)
    c = host_with_free(api, "xs-c", 30)
    running(api, "web-1", a)
    running(api, "web-2", a)
    os.remove(os.path.join(api.sim.get_host_root(c), "etc", "xapi.d", "plugins", "xsguard"))
    code, out, _ = workstation("pool", "--json")
    assert code == 0
    rows = {h["host_name"]: h for h in json.loads(out)["hosts"]}
    assert [h for h in rows] == ["xs-a", "xs-b", "xs-c"]
    assert (rows["xs-a"]["ports_used"], rows["xs-a"]["ports_free"], rows["xs-a"]["port_limit"]) == (60, 80, 148)
    assert (rows["xs-b"]["ports_used"], rows["xs-b"]["ports_free"], rows["xs-b"]["ceiling"]) == (40, 30, "xen_ports")
    for name, ref in (("xs-a", a), ("xs-b", b)):
        status = plugin(api, ref, "status")
        assert rows[name]["reachable"] is True and rows[name]["host_uuid"] == status["host_uuid"]
        for key in ("port_limit", "ports_used", "promised", "margin", "ports_free", "irq_limit", "irqs_used",
                    "irqs_free"):
            assert rows[name][key] == status[key]
    assert rows["xs-c"]["reachable"] is False and rows["xs-c"]["ports_free"] is None
    code, out, _ = workstation("pool")
    assert "xs-c  unreachable" in out and out.splitlines()[0].split()[:2] == ["host", "port"]


def test_place_ranks_hosts_as_their_checks_say(api, workstation):
    """place --json: every host's verdict, most room after first, each the same as that host's check."""
    hosts = {"xs-a": host_with_free(api, "xs-a", 5), "xs-b": host_with_free(api, "xs-b", 30),
             "xs-c": host_with_free(api, "xs-c", 70)}
    vm = make_vm(api, "app", **TEN)
    code, out, _ = workstation("place", "app", "--json")
    placed = json.loads(out)
    assert code == 0
    assert (placed["vm_name"], placed["need"], placed["fits"]) == ("app", 10, ["xs-c", "xs-b"])
    assert [(h["host_name"], h["verdict"], h["free_after"]) for h in placed["hosts"]] == [
        ("xs-c", "admit", 60), ("xs-b", "admit", 20), ("xs-a", "refuse", -5)]
    for row in placed["hosts"]:
        check = plugin(api, hosts[row["host_name"]], "check", vm_uuid=api.VM.get_uuid(vm))
        assert (row["verdict"], row["free"], row["free_after"], row["ceiling"]) == (
            check["verdict"], check["free"], check["free_after"], check["ceiling"])


def test_place_exits_3_when_no_host_has_room(api, workstation):
    """place exits 3, and says so, when the VM fits nowhere."""
    host_with_free(api, "xs-a", 5)
    host_with_free(api, "xs-b", 9)
    make_vm(api, "app", **TEN)
    code, out, _ = workstation("place", "app")
    assert code == 3 and out.rstrip().endswith("no host has room for it now")


def test_evacuate_ha_checks_every_host(api, workstation):
    """evacuate --ha: for each host, whether the others absorb its HA-protected VMs; exit 3 if one does not."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 25)
    host_with_free(api, "xs-c", 5)
    running(api, "ha-1", a, ha_restart_priority="restart")
    running(api, "ha-2", a, ha_restart_priority="restart")
    running(api, "plain", a)
    running(api, "ha-3", b, ha_restart_priority="restart")
    code, out, _ = workstation("evacuate", "--ha", "--json")
    plans = {p["host_name"]: p for p in json.loads(out)["hosts"]}
    assert code == 3
    assert (plans["xs-a"]["fits"], plans["xs-a"]["refused"]) == (False, ["ha-2"])
    assert [m["vm_name"] for m in plans["xs-a"]["moves"]] == ["ha-1"]
    assert (plans["xs-b"]["fits"], [m["to"] for m in plans["xs-b"]["moves"]]) == (True, ["xs-a"])
    assert (plans["xs-c"]["fits"], plans["xs-c"]["moves"]) == (True, [])


def test_need_and_check_from_a_workstation(api, workstation):
    """need and check without a dom0: --host, else where the VM runs, else its affinity host."""
    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 5)
    running(api, "web", a)
    make_vm(api, "later", affinity=b, **TEN)
    make_vm(api, "nowhere", **TEN)
    code, out, _ = workstation("need", "web", "--json")
    assert code == 0 and (json.loads(out)["host_name"], json.loads(out)["total"]) == ("xs-a", 10)
    code, out, _ = workstation("check", "later", "--json")
    assert code == 3 and (json.loads(out)["host"], json.loads(out)["free_after"]) == ("xs-b", -5)
    code, out, _ = workstation("check", "later", "--host", "xs-a", "--json")
    assert code == 0 and (json.loads(out)["host"], json.loads(out)["free_after"]) == ("xs-a", 80)
    code, _, err = workstation("need", "nowhere")
    assert code == 4 and "name the host with --host" in err
