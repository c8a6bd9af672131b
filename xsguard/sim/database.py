"""xapi's part of the simulated pool: sessions and roles, records, and where a VM may go."""

import uuid as uuid_mod
from typing import Any, Dict, List, Sequence

from . import guests, roles
from .hosts import Hosts
from .store import NULL, ApiError
from .where import WhereSyntaxError, compile_where

# the VM fields VM.create ignores: DynamicRO (xen-api ocaml/idl/datamodel_vm.ml:2821-3376, and the
# allowed/current operations every object has), and the uuid xapi makes itself
VM_DYNAMIC_RO = frozenset((
    "uuid", "is_default_template", "resident_on", "scheduled_to_be_resident_on", "consoles", "VIFs", "VBDs",
    "VUSBs", "crash_dumps", "VTPMs", "domid", "is_control_domain", "metrics", "guest_metrics",
    "transportable_snapshot_id", "blobs", "bios_strings", "VGPUs", "attached_PCIs", "requires_reboot",
    "recommended_guidances", "pending_guidances_recommended", "pending_guidances_full", "groups",
    "allowed_operations", "current_operations",
))


class Database(Hosts):
    """xapi's sessions, records and placement."""

    # sessions
    def add_user(self, name: str, role: str) -> None:
        """A login with a role (any password): xapi's local superuser is root, a pool-admin."""
        with self.lock:
            self.users[name] = roles.valid(role)

    def login(self, user: str, password: str, version: str = "", originator: str = "", local: bool = False) -> str:
        """A session carrying the user's role. Logins on the local socket are the local superuser
        whatever the name (xen-api ocaml/xapi/xapi_session.ml:256, ocaml/xapi/context.ml); others
        must name root or a user added, else PAM's failure (ocaml/xapi/xapi_session.ml:277-282)."""
        with self.lock:
            role = roles.POOL_ADMIN if local else self.users.get(user)
            if role is None:
                raise ApiError("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
            ref = "OpaqueRef:%s" % uuid_mod.uuid4()
            self.sessions[ref] = {"user": user, "originator": originator, "role": role,
                                  "host": self.store.get("pool", self.pool_ref)["master"]}
        return ref

    def check_session(self, ref: str, method: str, args: Sequence[Any] = ()) -> Dict[str, Any]:
        with self.lock:
            session = self.sessions.get(ref)
            if session is None:
                raise ApiError("SESSION_INVALID", ref)
            self.calls.append((session["originator"], method, tuple(args)))
            return session

    def logout(self, ref: str) -> None:
        with self.lock:
            self.sessions.pop(ref, None)

    def vm(self, ref: str) -> Dict[str, Any]:
        return self.store.get("VM", ref)

    def where(self, cls: str, expression: str) -> Dict[str, Dict[str, Any]]:
        try:
            predicate = compile_where(expression)
        except WhereSyntaxError as exc:
            raise ApiError("INVALID_VALUE", "expression", str(exc))
        with self.lock:
            return {r: self.store.snapshot(cls, r) for r in self.store.find(cls, predicate)}

    def set_devices_attached(self, vm: Dict[str, Any], attached: bool) -> None:
        for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs"), ("VGPU", "VGPUs")):
            for ref in vm[field]:
                self.store.get(cls, ref)["currently_attached"] = attached

    def guest(self, vm_uuid: str) -> guests.Guest:
        return self.guests.setdefault(vm_uuid, guests.Guest())

    # creation
    def create_vm(self, record: Dict[str, Any]) -> str:
        """VM.create reads only its constructor's fields: the DynamicRO ones given are ignored (xen-api
        ocaml/idl/ocaml_backend/gen_server.ml:115-140 looks up ctor_fields only; the DynamicRO fields of a
        VM: ocaml/idl/datamodel_vm.ml:2821-3376), the uuid is new, the power state Halted (xapi_vm.ml
        create, ocaml/xapi/xapi_vm.ml:595-650: Suspended needs a suspend VDI the simulator has not),
        and an unspecified domain type is derived from HVM_boot_policy (ocaml/xapi/xapi_vm.ml:617-621)."""
        fields = {k: v for k, v in record.items() if k not in VM_DYNAMIC_RO}
        if str(record.get("power_state", "Halted")) == "Suspended":
            raise ApiError("VM_BAD_POWER_STATE", NULL, "halted", "suspended")
        fields.pop("power_state", None)
        for key in ("VCPUs_max", "VCPUs_at_startup", "memory_static_max"):
            if key in fields:
                fields[key] = str(int(fields[key]))
        if fields.get("domain_type", "unspecified") in ("", "unspecified"):
            fields["domain_type"] = "pv" if fields.get("HVM_boot_policy", "") == "" else "hvm"
        with self.lock:
            ref = self.store.create("VM", fields)
            metrics = self.store.create("VM_metrics", {})
            self.vm(ref)["metrics"] = metrics
            return ref

    def create_device(self, cls: str, record: Dict[str, Any]) -> str:
        with self.lock:
            vm_ref = record.get("VM", NULL)
            vm = self.vm(vm_ref)
            fields = dict(record)
            fields["currently_attached"] = False
            ref = self.store.create(cls, fields)
            vm[{"VBD": "VBDs", "VIF": "VIFs", "VGPU": "VGPUs"}[cls]].append(ref)
            return ref

    def destroy_vm(self, ref: str) -> None:
        with self.lock:
            vm = self.vm(ref)
            if vm["power_state"] != "Halted":
                raise ApiError("VM_BAD_POWER_STATE", ref, "halted", vm["power_state"].lower())
            for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs"), ("VGPU", "VGPUs")):
                for dev in vm[field]:
                    self.store.destroy(cls, dev)
            if vm["metrics"] != NULL:
                self.store.destroy("VM_metrics", vm["metrics"])
            self.store.destroy("VM", ref)

    def free_memory(self, host_ref: str) -> int:
        """host.compute_free_memory: the host's memory less what its VMs (running or arriving) take."""
        with self.lock:
            self.host(host_ref)
            return self._free_memory(host_ref)

    def _free_memory(self, host_ref: str) -> int:
        host = self.store.get("host", host_ref)
        used = 0
        for rec in self.store.tables["VM"].values():
            if (rec["resident_on"] == host_ref or rec["scheduled_to_be_resident_on"] == host_ref) \
                    and not rec["is_control_domain"]:
                used += int(rec["memory_static_max"])
        return int(host["memory_total"]) - used

    def _assert_memory(self, host_ref: str, vm: Dict[str, Any]) -> None:
        free = self._free_memory(host_ref)
        needed = int(vm["memory_static_max"])
        if needed > free:
            raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", str(needed), str(free))

    def _choose_host(self, vm_ref: str, vm: Dict[str, Any]) -> str:
        """Where xapi starts a VM given no host (xen-api ocaml/xapi/xapi_vm_helpers.ml:1109-1164,
        ocaml/xapi/xapi_vm_placement.ml:80-104, ocaml/xapi/vm_placement.ml:236-350): the affinity host if
        it can run it; else, among the hosts with room for every VM resident or scheduled there and this
        one, ranked by the memory that leaves (the master's value (v - 1) / 2: coordinator_bias, true by
        default, ocaml/idl/datamodel_pool.ml:2349), a biased random one (index = n * r * r,
        biased_random_fn); a host that cannot run it is dropped and another drawn. The simulator's VMs
        have no dynamic memory range, so the "probable" and "possible" categories add no host. None
        with room: again ignoring memory, and the reservation then fails."""
        needed = int(vm["memory_static_max"])
        enabled = [h for h in sorted(self.hosts) if self.store.get("host", h)["enabled"]]
        if not enabled:
            raise ApiError("NO_HOSTS_AVAILABLE")
        affinity = vm["affinity"]
        if affinity in enabled and self._free_memory(affinity) >= needed:
            return affinity
        master = self.store.get("pool", self.pool_ref)["master"]

        def value(h: str) -> int:
            left = self._free_memory(h) - needed
            return (left - 1) // 2 if h == master and left >= 0 else left

        fitting = sorted((h for h in enabled if value(h) >= 0), key=value, reverse=True)
        chosen = self._biased_pick(fitting) if fitting else self._biased_pick(enabled)
        self._assert_memory(chosen, vm)
        return chosen

    def _biased_pick(self, ranked: List[str]) -> str:
        """vm_placement.ml's take_random_element_from_list with biased_random_fn (:150-165, :346-349)."""
        r = self.random.random()
        return ranked[int(len(ranked) * r * r)]

    # hosts in and out of service
    def _assert_enabled(self, host_ref: str) -> None:
        if not self.store.get("host", host_ref)["enabled"]:
            raise ApiError("HOST_DISABLED", host_ref)
        self.host(host_ref)

    def set_enabled(self, host_ref: str, enabled: bool) -> None:
        """host.disable / host.enable: a disabled host takes no new VM (starts, migrations, resumes)."""
        with self.lock:
            self.host(host_ref)
            self.store.get("host", host_ref)["enabled"] = enabled
