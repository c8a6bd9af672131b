"""xapi's roles (RBAC) for the calls the simulator serves: who may call what, and the denial.

Read in xen-api: the roles, in decreasing order of privilege (ocaml/idl/datamodel_roles.ml:23-60;
a call allowed to a role is allowed to every role above it, ``roles_gte`` :87-97); the role each call
needs (``allowed_roles`` in ocaml/idl/datamodel*.ml, lines below); the denial
``RBAC_PERMISSION_DENIED [permission; message]`` with the permission the call's name in lower case
(ocaml/xapi/rbac.ml:97-102, 197-216).
"""

from typing import Dict, List

from .store import ApiError

POOL_ADMIN = "pool-admin"
ORDER = (POOL_ADMIN, "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only")

# calls whose role is their own (file:line of their allowed_roles)
CALLS: Dict[str, str] = {
    "host.call_plugin": POOL_ADMIN,  # ocaml/idl/datamodel_host.ml:1026
    "host.evacuate": "pool-operator",  # datamodel_host.ml:552
    "host.disable": "pool-operator",  # datamodel_host.ml:659
    "host.enable": "pool-operator",  # datamodel_host.ml:675
    "host.migrate_receive": "vm-power-admin",  # datamodel_host.ml:60
    "message.create": "pool-operator",  # ocaml/idl/datamodel.ml:9013
    "VM.start": "vm-operator",  # ocaml/idl/datamodel_vm.ml:659
    "VM.start_on": "vm-power-admin",  # datamodel_vm.ml:1105
    "VM.clean_shutdown": "vm-operator",  # datamodel_vm.ml:1185
    "VM.clean_reboot": "vm-operator",  # datamodel_vm.ml:1213
    "VM.hard_shutdown": "vm-operator",  # datamodel_vm.ml:1236
    "VM.hard_reboot": "vm-operator",  # datamodel_vm.ml:1312
    "VM.suspend": "vm-operator",  # datamodel_vm.ml:1355
    "VM.resume": "vm-operator",  # datamodel_vm.ml:1406
    "VM.resume_on": "vm-power-admin",  # datamodel_vm.ml:1440
    "VM.pool_migrate": "vm-power-admin",  # datamodel_vm.ml:1466
    "VM.migrate_send": "vm-power-admin",  # datamodel_vm.ml:1729
}

# every other call that changes something: its class's messages_default_allowed_roles
CLASSES: Dict[str, str] = {
    "VM": "vm-admin",  # ocaml/idl/datamodel_vm.ml:2661
    "VBD": "vm-admin",  # ocaml/idl/datamodel.ml:6809
    "VIF": "vm-admin",  # datamodel.ml:3883
    "VDI": "vm-admin",  # datamodel.ml:6285
    "network": "vm-admin",  # datamodel.ml:1960
    "VM_metrics": "vm-admin",  # datamodel.ml:7489
    "VM_guest_metrics": "vm-admin",  # datamodel.ml:7605
    "VGPU": "pool-operator",  # datamodel.ml:9912
    "message": "pool-operator",  # datamodel.ml:9125
    "host": "pool-operator",  # ocaml/idl/datamodel_host.ml:2798
    "pool": "pool-operator",  # ocaml/idl/datamodel_pool.ml:1791
}

# reads, sessions, events and one's own tasks are open to every role: getters are _R_ALL
# (ocaml/idl/datamodel_utils.ml:318, field_getter_roles), and so are the event and task calls the
# simulator serves (ocaml/idl/datamodel.ml, task :480-545 _R_READ_ONLY; event: _R_ALL)
OPEN_CLASSES = ("session", "event", "task", "system")


def needed(method: str) -> str:
    """The least role that may call ``method``."""
    if method in CALLS:
        return CALLS[method]
    cls, _, name = method.partition(".")
    if cls in OPEN_CLASSES or name.startswith("get_"):
        return "read-only"
    return CLASSES.get(cls, POOL_ADMIN)


def allowed(role: str, method: str) -> bool:
    return ORDER.index(role) <= ORDER.index(needed(method))


def with_permission(method: str) -> List[str]:
    """The roles that may call ``method``, in xapi's order."""
    return list(ORDER[:ORDER.index(needed(method)) + 1])


def check(role: str, method: str) -> None:
    """RBAC_PERMISSION_DENIED as xapi raises it, unless ``role`` may call ``method``."""
    if not allowed(role, method):
        raise ApiError("RBAC_PERMISSION_DENIED", method.lower(),
                       "No permission in user session. (Roles with this permission: %s)"
                       % ", ".join(with_permission(method)))


def valid(role: str) -> str:
    if role not in ORDER:
        raise ApiError("INVALID_VALUE", "role", role)
    return role
