"""The host plugin through host.call_plugin, run as xapi runs it."""

import json

import pytest

from tests.pool import failure, make_vm, small_host


@pytest.fixture
def host(api):
    return small_host(api, port_limit=100, vcpus=4)


def call(api, host, fn, **args):
    return json.loads(api.host.call_plugin(host, "xsguard", fn, args))


def test_status(api, host):
    """status: the ceilings, usage and free ports of that host, as JSON."""
    vm = make_vm(api, "web", vcpus=2, hvm=True, affinity=host)
    api.VM.start(vm, False, False)
    s = call(api, host, "status")
    assert (s["port_limit"], s["port_limit_source"]) == (100, "configured ([dom0] port_limit)")
    assert s["ports_used"] == int(api.sim.get_dom0(host)["ports_used"])
    assert s["ports_free"] == 100 - 8 - s["ports_used"] - s["promised"]
    domid = api.VM.get_domid(vm)
    assert s["by_remote_domain"][domid]["vm_name"] == "web"
    assert s["leaked"] == {}
    assert s["irq_limit"] == 41220 and s["irqs_used"] == int(api.sim.get_dom0(host)["irqs_used"])


def test_need(api, host):
    """need: the breakdown of a VM on that host."""
    vm = make_vm(api, "web", vcpus=2, hvm=True, disks=1, nics=1)
    n = call(api, host, "need", vm_uuid=api.VM.get_uuid(vm))
    assert n["total"] == 10
    assert [b["consumer"] for b in n["breakdown"]] == ["xenstore", "console", "qemu-ioreq", "vbd 0 (Disk)", "vif 0"]


def test_check_refusal_is_a_result(api, host):
    """check: a refusal comes back as a verdict, not an error; nothing is recorded."""
    vm = make_vm(api, "huge", vcpus=32, hvm=True, firmware="uefi", disks=4, nics=2)
    c = call(api, host, "check", vm_uuid=api.VM.get_uuid(vm))
    assert c["verdict"] == "refuse" and c["ceiling"] == "xen_ports"
    assert c["need"] > c["free"] and "xsguard refused" in c["message"]
    small = make_vm(api, "small")
    assert call(api, host, "check", vm_uuid=api.VM.get_uuid(small))["verdict"] == "admit"
    assert call(api, host, "status")["promised"] == 0


def test_denials(api, host):
    """denials: the refused starts from that host's decision log, newest first."""
    for name in ("a", "b"):
        vm = make_vm(api, name, vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
        failure(api.VM.start, vm, False, False)
    d = call(api, host, "denials", since="1h", limit="5")
    assert [r["vm_name"] for r in d["denials"]] == ["b", "a"]
    assert call(api, host, "denials", limit="1")["denials"][0]["vm_name"] == "b"


@pytest.mark.parametrize("fn,args,message", [
    ("need", {}, "vm_uuid must be a VM's uuid"),
    ("need", {"vm_uuid": "not-a-uuid"}, "vm_uuid must be a VM's uuid, not 'not-a-uuid'"),
    ("need", {"vm_uuid": "x" * 100000}, "argument vm_uuid is 100000 characters long"),
    ("status", {"verbose": "yes"}, "status takes no arguments; unknown: verbose"),
    ("check", {"vm": "x"}, "check takes vm_uuid; unknown: vm"),
    ("denials", {"limit": "ten"}, "limit must be a whole number"),
    ("denials", {"since": "yesterday"}, "since must be like 2h"),
])
def test_bad_arguments(api, host, fn, args, message):
    """Unknown arguments, a non-uuid, a 1 MB string: XSGUARD_BAD_ARGUMENT with a readable message."""
    details = failure(api.host.call_plugin, host, "xsguard", fn, args)
    assert details[0] == "XSGUARD_BAD_ARGUMENT"
    assert message in details[1]


def test_one_megabyte_argument(api, host):
    """1 MB cannot even reach a plugin (Linux caps one argv string at 128 KiB): xapi's exec error."""
    from xsguard.errors import BadArgument
    from xsguard.plugin import validate

    details = failure(api.host.call_plugin, host, "xsguard", "need", {"vm_uuid": "x" * 1000000})
    assert details[:2] == ["XENAPI_PLUGIN_FAILURE", "failed to execute plugin"]
    assert "Argument list too long" in details[3]
    with pytest.raises(BadArgument, match="1000000 characters long"):
        validate("need", {"vm_uuid": "x" * 1000000})


def test_unknown_vm(api, host):
    """A uuid no VM has: XSGUARD_VM_NOT_FOUND."""
    details = failure(api.host.call_plugin, host, "xsguard", "need",
                      {"vm_uuid": "7e1b1c55-0000-4000-8000-000000000000"})
    assert details[:2] == ["XSGUARD_VM_NOT_FOUND", "no VM has uuid or name '7e1b1c55-0000-4000-8000-000000000000'"]


def test_probe_failure(api, host):
    """lsevtchn missing: XSGUARD_PROBE_FAILED naming it, no traceback."""
    api.sim.set_xsguard_config(host, {"dom0.lsevtchn": "/nonexistent/lsevtchn"})
    details = failure(api.host.call_plugin, host, "xsguard", "status", {})
    assert details[0] == "XSGUARD_PROBE_FAILED" and "/nonexistent/lsevtchn" in details[1]
    assert not any("Traceback" in d for d in details)


def test_template_is_not_a_candidate(api, host):
    """A template asked about: XSGUARD_NOT_A_CANDIDATE."""
    vm = make_vm(api, "tmpl", is_a_template=True)
    details = failure(api.host.call_plugin, host, "xsguard", "check", {"vm_uuid": api.VM.get_uuid(vm)})
    assert details[0] == "XSGUARD_NOT_A_CANDIDATE" and "is a template" in details[1]


def test_unknown_function(api, host):
    """An fn the plugin does not export: XenAPIPlugin's UNKNOWN_XENAPI_PLUGIN_FUNCTION."""
    assert failure(api.host.call_plugin, host, "xsguard", "reboot", {}) == [
        "UNKNOWN_XENAPI_PLUGIN_FUNCTION", "reboot"]


def test_status_names_a_real_leak(api, sim, host):
    """A shut-down VM whose disk and NIC backends never closed their channels: status lists them as
    leaked under the dead domain, counts them as used, and names no VM for them."""
    from xsguard.sim.dom0 import action_name

    vm = make_vm(api, "gone", vcpus=2, hvm=True, affinity=host)
    api.VM.start(vm, False, False)
    domid = int(api.VM.get_domid(vm))
    api.VM.hard_shutdown(vm)
    before = call(api, host, "status")["ports_used"]
    dom0 = sim.pool.hosts[host].dom0
    with sim.pool.lock:  # what a stuck tapdisk and netback leave behind
        dom0.bind(domid, [action_name(domid, "vbd"), action_name(domid, "vif", "0", 0, "tx"),
                          action_name(domid, "vif", "0", 0, "rx")])
        dom0.write_state()
    s = call(api, host, "status")
    assert s["leaked"] == {str(domid): 3}
    assert s["by_remote_domain"][str(domid)] == {"ports": 3}
    assert s["ports_used"] == before + 3
    assert s["ports_free"] == 100 - 8 - (before + 3) - s["promised"]
