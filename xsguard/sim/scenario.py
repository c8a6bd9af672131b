"""Describe a pool in a JSON file: hosts with their dom0, VMs with their devices and guests.

    {"hosts": [{"name": "xs-a", "dom0": {"vcpus": 16, "abi": "2-level", "stack": "xs8"},
                "xsguard": {"policy.margin": "32"}}],
     "vms": [{"name": "desk", "count": 40, "vcpus": 2, "hvm": true, "firmware": "uefi",
              "windows": true, "disks": 1, "cds": 1, "nics": 1, "memory_gib": 2,
              "affinity": "xs-a", "guest": {"connect_delay": 2, "pv_drivers": true}}]}

``count`` makes that many VMs named ``<name>-01``, ``<name>-02``, ...; ``"running": true``
starts them once the pool is served (``start_running``), their hooks deciding as on a host.
"""

import json
from typing import Any, Dict, List

from .pool import Pool
from .store import NULL, ApiError

GiB = 1024 ** 3
DOC_KEYS = {"about", "hosts", "vms"}
HOST_KEYS = {"name", "dom0", "xsguard"}
VM_KEYS = {"name", "count", "vcpus", "hvm", "firmware", "windows", "disks", "cds", "nics",
           "memory_gib", "affinity", "guest", "other_config", "domain_type", "running"}

# what ``xsguard simulate`` serves without a scenario: two hosts, a few VMs running on each, one halted
DEFAULT = {
    "hosts": [{"name": "xs-a", "dom0": {"vcpus": 8, "abi": "fifo"}},
              {"name": "xs-b", "dom0": {"vcpus": 8, "abi": "2-level"}}],
    "vms": [{"name": "web", "count": 3, "vcpus": 2, "hvm": True, "disks": 1, "nics": 1, "affinity": "xs-a",
             "running": True},
            {"name": "sql", "count": 2, "vcpus": 4, "hvm": True, "firmware": "uefi", "windows": True, "disks": 2,
             "nics": 1, "memory_gib": 4, "affinity": "xs-b", "running": True},
            {"name": "spare", "vcpus": 1, "disks": 1, "nics": 1}],
}


def vm_record(spec: Dict[str, Any], name: str, hosts: Dict[str, str]) -> Dict[str, Any]:
    vcpus = int(spec.get("vcpus", 1))
    hvm = bool(spec.get("hvm", False))
    record = {
        "name_label": name,
        "VCPUs_max": str(vcpus),
        "VCPUs_at_startup": str(vcpus),
        "memory_static_max": str(int(float(spec.get("memory_gib", 1)) * GiB)),
        "HVM_boot_policy": "BIOS order" if hvm else "",
        "HVM_boot_params": {"firmware": spec.get("firmware", "bios")} if hvm else {},
        "domain_type": spec.get("domain_type", "hvm" if hvm else "pv"),
        "platform": {"viridian": "true", "device_id": "0002"} if spec.get("windows") else {},
        "other_config": dict(spec.get("other_config", {})),
        "affinity": hosts.get(spec.get("affinity", ""), NULL),
    }
    return record


def build(pool: Pool, doc: Dict[str, Any]) -> Dict[str, List[str]]:
    """Create the hosts and VMs of a scenario; returns their refs by kind (ValueError for a key it
    does not know: a typo never leaves a default silently in force)."""
    _known(doc, DOC_KEYS, "scenario")
    for host in doc.get("hosts", []):
        _known(host, HOST_KEYS, "host")
    hosts: Dict[str, str] = {}
    for host in doc.get("hosts", []):
        dom0 = dict(host.get("dom0", {}))
        stack = dom0.pop("stack", None)
        ref = pool.add_host(host["name"], dom0)
        hosts[host["name"]] = ref
        if stack is not None:
            pool.set_stack(ref, str(stack))
        if host.get("xsguard"):
            sim_host = pool.hosts[ref]
            sim_host.config.update({k: str(v) for k, v in host["xsguard"].items()})
            pool.write_xsguard_config(sim_host)
    vms = []
    running = []
    for spec in doc.get("vms", []):
        unknown = set(spec) - VM_KEYS
        if unknown:
            raise ValueError("unknown VM keys in scenario: %s" % ", ".join(sorted(unknown)))
        count = int(spec.get("count", 1))
        for i in range(count):
            name = spec["name"] if "count" not in spec else "%s-%02d" % (spec["name"], i + 1)
            ref = pool.create_vm(vm_record(spec, name, hosts))
            for d in range(int(spec.get("disks", 1))):
                pool.create_device("VBD", {"VM": ref, "userdevice": str(d), "type": "Disk"})
            for c in range(int(spec.get("cds", 0))):
                pool.create_device("VBD", {"VM": ref, "userdevice": str(3 + c), "type": "CD", "empty": True})
            for n in range(int(spec.get("nics", 1))):
                pool.create_device("VIF", {"VM": ref, "device": str(n)})
            guest = {"ctrl_ring": True} if spec.get("windows") else {}  # Windows PV drivers
            guest.update(spec.get("guest", {}))
            if guest:
                with pool.lock:
                    pool.guest(pool.vm(ref)["uuid"]).update(guest)
            vms.append(ref)
            if spec.get("running"):
                running.append(ref)
    return {"hosts": list(hosts.values()), "vms": vms, "running": running}


def _known(found: Any, keys: Any, what: str) -> None:
    if not isinstance(found, dict):
        raise ValueError("a %s must be a JSON object, not %s" % (what, type(found).__name__))
    unknown = set(found) - keys
    if unknown:
        raise ValueError("unknown %s keys in scenario: %s (known: %s)"
                         % (what, ", ".join(sorted(unknown)), ", ".join(sorted(keys))))


def start_running(pool: Pool, built: Dict[str, List[str]]) -> List[str]:
    """Start the VMs a scenario wants running, in order (the pool must be served: hooks call it).

    A start that fails (refused by a hook, no room) is said in the list returned, one line each.
    """
    failed = []
    for ref in built.get("running", []):
        try:
            pool.start(ref)
        except ApiError as exc:
            failed.append("VM '%s' did not start: %s" % (pool.vm(ref)["name_label"], " ".join(exc.description)[:300]))
    return failed


def load_file(pool: Pool, path: str) -> Dict[str, List[str]]:
    with open(path) as handle:
        return build(pool, json.load(handle))
