"""The simulated pool's objects: records as xapi sends them, referenced by ``OpaqueRef:<uuid>``.

Integers are kept as xapi sends them over XML-RPC, as decimal strings.
"""

import uuid as uuid_mod
from typing import Any, Callable, Dict, List, Optional

NULL = "OpaqueRef:NULL"
GiB = 1024 ** 3


class ApiError(Exception):
    """An error xapi would return: ``ErrorDescription`` = [code] + params."""

    def __init__(self, code: str, *params: Any) -> None:
        super().__init__(code)
        self.description = [code] + [str(p) for p in params]


def new_ref() -> str:
    return "OpaqueRef:%s" % uuid_mod.uuid4()


def _vm_defaults() -> Dict[str, Any]:
    return {
        "name_label": "", "name_description": "", "power_state": "Halted",
        "is_a_template": False, "is_a_snapshot": False, "is_control_domain": False,
        "domain_type": "unspecified", "HVM_boot_policy": "", "HVM_boot_params": {},
        "PV_bootloader": "pygrub", "VCPUs_max": "1", "VCPUs_at_startup": "1",
        "memory_static_max": str(GiB), "memory_dynamic_max": str(GiB),
        "VBDs": [], "VIFs": [], "VGPUs": [], "VTPMs": [], "VUSBs": [], "attached_PCIs": [],
        "platform": {}, "other_config": {}, "xenstore_data": {}, "tags": [],
        "resident_on": NULL, "scheduled_to_be_resident_on": NULL, "affinity": NULL,
        "domid": "-1", "metrics": NULL, "guest_metrics": NULL,
        "current_operations": {}, "allowed_operations": [], "ha_restart_priority": "",
    }


DEFAULTS: Dict[str, Callable[[], Dict[str, Any]]] = {
    "VM": _vm_defaults,
    "VBD": lambda: {
        "VM": NULL, "VDI": NULL, "type": "Disk", "empty": False, "mode": "RW",
        "device": "", "userdevice": "0", "bootable": False, "currently_attached": False,
        "other_config": {},
    },
    "VIF": lambda: {
        "VM": NULL, "network": NULL, "device": "0", "MAC": "", "MTU": "1500",
        "currently_attached": False, "other_config": {},
    },
    "VGPU": lambda: {"VM": NULL, "device": "0", "type": NULL, "currently_attached": False,
                     "other_config": {}},
    "VDI": lambda: {"name_label": "", "virtual_size": str(10 * GiB), "VBDs": [], "SR": NULL,
                    "other_config": {}},
    "network": lambda: {"name_label": "", "bridge": "", "VIFs": [], "other_config": {}},
    "host": lambda: {
        "name_label": "", "name_description": "", "hostname": "", "address": "127.0.0.1",
        "enabled": True, "resident_VMs": [], "control_domain": NULL,
        "memory_total": str(256 * GiB), "software_version": {"product_brand": "XCP-ng",
                                                            "product_version": "8.3.0"},
        "cpu_info": {}, "other_config": {},
        "API_version_major": "2", "API_version_minor": "21", "API_version_vendor": "XenSource",
    },
    "pool": lambda: {"name_label": "", "master": NULL, "other_config": {}},
    "VM_metrics": lambda: {"VCPUs_number": "0", "memory_actual": "0",
                           "current_domain_type": "unspecified", "other_config": {}},
    "VM_guest_metrics": lambda: {"os_version": {}, "PV_drivers_detected": False,
                                 "other_config": {}},
    "message": lambda: {"name": "", "priority": "3", "cls": "VM", "obj_uuid": "",
                        "timestamp": "", "body": ""},
    # an Async call's task (xen-api ocaml/idl/datamodel.ml, class task: status pending | success |
    # failure | cancelling | cancelled; result the XML-RPC value as text; error_info the error)
    "task": lambda: {"name_label": "", "name_description": "", "status": "pending", "progress": 0.0,
                     "result": "", "error_info": [], "created": "", "finished": "", "type": "",
                     "resident_on": NULL, "other_config": {}, "allowed_operations": [],
                     "current_operations": {}},
}

# the int fields of the records above (Int in xen-api's datamodel, e.g. VM.domid at
# ocaml/idl/datamodel_vm.ml:2926, message.priority at ocaml/idl/datamodel.ml:9157): xapi writes an
# int as ``<value>N</value>``, a string to an XML-RPC client, and as a JSON number over JSON-RPC
# (ocaml-rpc: mirage/ocaml-rpc src/lib/xmlrpc.ml add_value, src/lib/jsonrpc.ml rpc_to_json)
INT_FIELDS = frozenset(("VCPUs_max", "VCPUs_at_startup", "memory_static_max", "memory_dynamic_max", "domid",
                        "VCPUs_number", "memory_actual", "MTU", "virtual_size", "memory_total",
                        "API_version_major", "API_version_minor", "priority"))

# fields a client may set (xapi has no setter for the others)
WRITABLE = {
    "VM": {"name_label", "name_description", "VCPUs_max", "VCPUs_at_startup", "other_config",
           "platform", "HVM_boot_policy", "HVM_boot_params", "domain_type", "affinity",
           "memory_static_max", "memory_dynamic_max", "is_a_template", "xenstore_data", "tags",
           "ha_restart_priority"},
    "VBD": {"other_config", "userdevice", "mode", "bootable"},
    "VIF": {"other_config"},
    "VDI": {"name_label", "other_config"},
    "network": {"name_label", "other_config"},
    "host": {"name_label", "name_description", "other_config"},
    "pool": {"name_label", "other_config"},
    "VM_metrics": {"other_config"},
    "VM_guest_metrics": {"other_config"},
    "VGPU": {"other_config"},
    "message": set(),
    "task": {"other_config"},
}


class Store:
    """All records, by class and reference, with a uuid index."""

    def __init__(self) -> None:
        self.tables: Dict[str, Dict[str, Dict[str, Any]]] = {cls: {} for cls in DEFAULTS}
        self.by_uuid: Dict[str, Dict[str, str]] = {cls: {} for cls in DEFAULTS}

    def create(self, cls: str, fields: Dict[str, Any]) -> str:
        record = DEFAULTS[cls]()
        record.update(fields)
        record.setdefault("uuid", str(uuid_mod.uuid4()))
        ref = new_ref()
        self.tables[cls][ref] = record
        self.by_uuid[cls][record["uuid"]] = ref
        return ref

    def destroy(self, cls: str, ref: str) -> None:
        record = self.get(cls, ref)
        del self.tables[cls][ref]
        del self.by_uuid[cls][record["uuid"]]

    def get(self, cls: str, ref: str) -> Dict[str, Any]:
        try:
            return self.tables[cls][ref]
        except (KeyError, TypeError):
            raise ApiError("HANDLE_INVALID", cls, ref)

    def ref_of_uuid(self, cls: str, uuid: str) -> str:
        try:
            return self.by_uuid[cls][uuid]
        except (KeyError, TypeError):
            raise ApiError("UUID_INVALID", cls, uuid)

    def snapshot(self, cls: str, ref: str) -> Dict[str, Any]:
        """A copy safe to send while the pool changes (fields are scalars, lists and flat maps)."""
        return {k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in self.get(cls, ref).items()}

    def find(self, cls: str, predicate: Callable[[Dict[str, Any]], bool]) -> List[str]:
        return [ref for ref, rec in self.tables[cls].items() if predicate(rec)]

    def first(self, cls: str, predicate: Callable[[Dict[str, Any]], bool]) -> Optional[str]:
        for ref, rec in self.tables[cls].items():
            if predicate(rec):
                return ref
        return None
