"""xenopsd's part of the simulated pool: a VM's domain built, its hooks, its guest's drivers
connecting on their timers, its domain released, suspended and resumed."""

import threading
from typing import Any, Dict, List, Optional

from . import guests, processes
from .database import Database
from .dom0 import NoSpace, action_name
from .hosts import SimHost
from .store import NULL, ApiError


class Xenopsd(Database):
    """The VM lifecycle on a host."""

    def start(self, vm_ref: str, host_ref: Optional[str] = None) -> None:
        with self.lock:
            vm = self.vm(vm_ref)
            self._assert_startable(vm_ref, vm)
            if host_ref is None:
                host_ref = self._choose_host(vm_ref, vm)
            else:
                self._assert_enabled(host_ref)
                self._assert_memory(host_ref, vm)
            self._delete_guest_metrics(vm)
            self.busy.add(vm_ref)
        try:
            self._start_on(vm_ref, host_ref, reason="none")
        finally:
            with self.lock:
                self.busy.discard(vm_ref)

    def _delete_guest_metrics(self, vm: Dict[str, Any]) -> None:
        """VM.start (start_on, HA restarts) deletes the VM's guest metrics before xenopsd runs the hook:
        xen-api ocaml/xapi/xapi_vm.ml:338 calls delete_guest_metrics (ocaml/xapi/xapi_vm_helpers.ml:1369-1373);
        the guest agent reports them again once its drivers are up (``_report_drivers``)."""
        if vm["guest_metrics"] != NULL:
            gone, vm["guest_metrics"] = vm["guest_metrics"], NULL
            self.store.destroy("VM_guest_metrics", gone)

    def _assert_startable(self, vm_ref: str, vm: Dict[str, Any]) -> None:
        if vm["is_control_domain"] or vm["is_a_template"] or vm["is_a_snapshot"]:
            raise ApiError("OPERATION_NOT_ALLOWED", "VM %s is a template, snapshot or control domain" % vm_ref)
        if vm_ref in self.busy:
            raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
        if vm["power_state"] != "Halted":
            raise ApiError("VM_BAD_POWER_STATE", vm_ref, "halted", vm["power_state"].lower())

    def _start_on(self, vm_ref: str, host_ref: str, reason: str) -> None:
        """xapi's part, then xenopsd's: hooks, domain build, devices."""
        host = self.hosts[host_ref]
        with self.lock:
            vm = self.vm(vm_ref)
            vm["scheduled_to_be_resident_on"] = host_ref
            self.set_devices_attached(vm, True)  # xapi sets these before calling xenopsd
            vm_uuid = vm["uuid"]
        with host.workers:
            try:
                processes.run_hooks(host.root, "vm-pre-start", vm_uuid, reason, host.config_path,
                                    self.hook_log)
                with self.lock:
                    self._build_domain(vm_ref, host)
            except Exception:
                with self.lock:
                    vm = self.vm(vm_ref)
                    vm["scheduled_to_be_resident_on"] = NULL
                    vm["power_state"] = "Halted"
                    self.set_devices_attached(vm, False)
                raise

    def _build_domain(self, vm_ref: str, host: SimHost) -> None:
        vm = self.vm(vm_ref)
        domid = self.next_domid
        self.next_domid += 1
        dtype = vm["domain_type"]
        if dtype in ("", "unspecified"):
            dtype = "pv" if vm["HVM_boot_policy"] == "" else "hvm"
        vcpus = int(vm["VCPUs_max"])
        firmware = vm["HVM_boot_params"].get("firmware", "bios")
        actions = [action_name(domid, kind) for kind in guests.at_build(host.stack, dtype, vcpus, firmware)]
        try:
            host.dom0.bind(domid, actions)
        except NoSpace as exc:
            self.failures.append({"vm": vm["uuid"], "device": "domain", "error": "error 28: %s" % exc})
            host.dom0.write_state()
            raise ApiError("INTERNAL_ERROR", "xenopsd internal error: Device.Ioemu_failed(\"%s\")" % exc)
        vm.update({"power_state": "Running", "domid": str(domid), "resident_on": host.ref,
                   "scheduled_to_be_resident_on": NULL})
        self.store.get("host", host.ref)["resident_VMs"].append(vm_ref)
        metrics = self.store.tables["VM_metrics"].get(vm["metrics"])
        if metrics is not None:
            metrics.update({"VCPUs_number": str(int(vm["VCPUs_at_startup"])), "current_domain_type": dtype})
        host.dom0.write_state()
        self._report_drivers(vm, False)  # a new domain: its drivers are not up yet
        guest = self.guest(vm["uuid"])
        if guest.pv_drivers:
            timer = threading.Timer(guest.connect_delay, self._connect, (vm_ref, host, domid, dtype))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()

    def _connect(self, vm_ref: str, host: SimHost, domid: int, dtype: str) -> None:
        """The guest's PV drivers connect: each VBD and VIF binds its channels, or fails."""
        with self.lock:
            vm = self.store.tables["VM"].get(vm_ref)
            if vm is None or vm["domid"] != str(domid) or vm["power_state"] != "Running" \
                    or domid not in host.dom0.guest_ports:  # a reboot: the record keeps the old domid
                return  # the domain is gone
            guest = self.guest(vm["uuid"])
            vbds = [self.store.get("VBD", r) for r in vm["VBDs"]]
            vifs = [self.store.get("VIF", r) for r in vm["VIFs"]]
            backend = guests.Backend(host.dom0.vcpus, host.dom0.vcpus)  # the sysfs max_queues dom0 writes
            for device, ports in guests.at_connect(host.stack, dtype, int(vm["VCPUs_max"]), vbds, vifs, guest.asks,
                                                   backend):
                actions = [action_name(domid, kind, index, queue, direction)
                           for kind, index, queue, direction in ports]
                self._bind_device(vm, host, domid, device, actions)
            host.dom0.write_state()
            self._report_drivers(vm, True)

    def _report_drivers(self, vm: Dict[str, Any], up: bool) -> None:
        """What xapi's VM_guest_metrics says of the guest: PV_drivers_detected, and its agent's OS name."""
        if vm["guest_metrics"] == NULL:
            if not up:
                return
            vm["guest_metrics"] = self.store.create("VM_guest_metrics", {})
        record = self.store.get("VM_guest_metrics", vm["guest_metrics"])
        record["PV_drivers_detected"] = up
        os_name = self.guest(vm["uuid"]).os_name
        if up and os_name:
            record["os_version"] = {"name": os_name}

    def _bind_device(self, vm: Dict[str, Any], host: SimHost, domid: int, device: str, actions: List[str]) -> None:
        try:
            host.dom0.bind(domid, actions)
        except NoSpace as exc:
            self.failures.append({"vm": vm["uuid"], "device": device,
                                  "error": "error 28 mapping ring-refs and evtchn (%s)" % exc})

    def _release_domain(self, vm_ref: str, vm: Dict[str, Any]) -> None:
        """The domain is gone: its ports close in dom0, the host no longer lists it."""
        host_ref = vm["resident_on"]
        if host_ref in self.hosts:
            host = self.hosts[host_ref]
            host.dom0.release(int(vm["domid"]))
            host.dom0.write_state()
            resident = self.store.get("host", host_ref)["resident_VMs"]
            if vm_ref in resident:
                resident.remove(vm_ref)
        vm["domid"] = "-1"

    def _destroy_domain(self, vm_ref: str) -> None:
        vm = self.vm(vm_ref)
        self._release_domain(vm_ref, vm)
        vm.update({"power_state": "Halted", "resident_on": NULL})
        self.set_devices_attached(vm, False)

    def bound_actions(self, host: SimHost, domid: int) -> List[str]:
        """The actions of the ports one domain holds in dom0, in the order it bound them."""
        return [host.dom0.ports[n].action for n in host.dom0.guest_ports.get(domid, [])]

    def _assert_migratable(self, vm_ref: str, vm: Dict[str, Any]) -> None:
        if vm["is_control_domain"]:
            raise ApiError("OPERATION_NOT_ALLOWED", "VM %s is a control domain" % vm_ref)
        if vm_ref in self.busy:
            raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
        if vm["power_state"] != "Running":
            raise ApiError("VM_BAD_POWER_STATE", vm_ref, "running", vm["power_state"].lower())

    def _new_domain(self, vm: Dict[str, Any], host: SimHost, actions: List[str], old_domid: int, what: str) -> int:
        """A new domain on ``host`` binding ``actions`` (an earlier domain's, renamed to the new domid)."""
        domid = self.next_domid
        self.next_domid += 1
        renamed = [_renamed(a, old_domid, domid) for a in actions]
        try:
            host.dom0.bind(domid, renamed)
        except NoSpace as exc:
            self.failures.append({"vm": vm["uuid"], "device": "domain", "error": "error 28: %s" % exc})
            host.dom0.write_state()
            raise ApiError("INTERNAL_ERROR", "xenopsd internal error: %s failed: %s" % (what, exc))
        host.dom0.write_state()
        return domid

    def _connect_later(self, vm_ref: str, host: SimHost, domid: int, held: List[str]) -> None:
        """A guest whose PV drivers had not connected yet connects on its new host."""
        vm = self.vm(vm_ref)
        guest = self.guest(vm["uuid"])
        immediate = {"evtchn:oxenstored", "evtchn:xenconsoled", "evtchn:qemu-system-i38", "evtchn:varstored"}
        if not guest.pv_drivers or any(a not in immediate for a in held) or not (vm["VBDs"] or vm["VIFs"]):
            return
        dtype = self.store.tables["VM_metrics"].get(vm["metrics"], {}).get("current_domain_type", "pv")
        timer = threading.Timer(guest.connect_delay, self._connect, (vm_ref, host, domid, dtype))
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def suspend(self, vm_ref: str) -> None:
        """VM.suspend: the domain's state is saved, its ports close, the VM is Suspended on no host."""
        with self.lock:
            vm = self.vm(vm_ref)
            self._assert_migratable(vm_ref, vm)
            host = self.hosts[vm["resident_on"]]
            self.suspended[vm_ref] = (int(vm["domid"]), self.bound_actions(host, int(vm["domid"])))
            self._release_domain(vm_ref, vm)
            vm.update({"power_state": "Suspended", "resident_on": NULL})
            self.set_devices_attached(vm, False)

    def resume(self, vm_ref: str, host_ref: Optional[str] = None) -> None:
        """VM.resume / VM.resume_on: a new domain binding nothing yet, the vm-pre-resume hooks with
        -vmdomid, then the domain's xenstore and console channels and its devices are restored; a
        refusal leaves it Suspended.

        xen-api ocaml/xenopsd/lib/xenops_server.ml:1493-1498: VM_create, then VM_hook_script
        VM_pre_resume, then VM_restore; the store and console channels are created in build_pre,
        called from Domain.restore (ocaml/xenopsd/xc/domain.ml:969-974), after the hook."""
        with self.lock:
            vm = self.vm(vm_ref)
            if vm_ref in self.busy:
                raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
            if vm["power_state"] != "Suspended":
                raise ApiError("VM_BAD_POWER_STATE", vm_ref, "suspended", vm["power_state"].lower())
            if host_ref is None:
                host_ref = self._choose_host(vm_ref, vm)
            else:
                self._assert_enabled(host_ref)
                self._assert_memory(host_ref, vm)
            host = self.hosts[host_ref]
            old_domid, held = self.suspended[vm_ref]
            vm["scheduled_to_be_resident_on"] = host_ref
            self.set_devices_attached(vm, True)
            self.busy.add(vm_ref)
        try:
            with host.workers:
                with self.lock:
                    domid = self._new_domain(vm, host, [], old_domid, "resume")
                try:
                    processes.run_hooks(host.root, "vm-pre-resume", vm["uuid"], "none", host.config_path,
                                        self.hook_log, domid)
                    with self.lock:
                        host.dom0.bind(domid, [_renamed(a, old_domid, domid) for a in held])
                except Exception as exc:
                    with self.lock:
                        if isinstance(exc, NoSpace):
                            self.failures.append({"vm": vm["uuid"], "device": "resume", "error": "error 28: %s" % exc})
                        host.dom0.release(domid)
                        host.dom0.write_state()
                    if isinstance(exc, NoSpace):
                        raise ApiError("INTERNAL_ERROR", "xenopsd internal error: resume failed: %s" % exc)
                    raise
            with self.lock:
                host.dom0.write_state()
                del self.suspended[vm_ref]
                vm.update({"power_state": "Running", "domid": str(domid), "resident_on": host_ref})
                self.store.get("host", host_ref)["resident_VMs"].append(vm_ref)
                self._connect_later(vm_ref, host, domid, held)
        except Exception:
            with self.lock:
                self.set_devices_attached(vm, False)
            raise
        finally:
            with self.lock:
                vm["scheduled_to_be_resident_on"] = NULL
                self.busy.discard(vm_ref)

    def over_admitted(self) -> List[Dict[str, str]]:
        with self.lock:
            return [dict(f) for f in self.failures]


def _renamed(action: str, old_domid: int, domid: int) -> str:
    """An action name of an earlier domain as the new domain's (netback names carry the domid)."""
    prefix = "vif%d." % old_domid
    return "vif%d.%s" % (domid, action[len(prefix):]) if action.startswith(prefix) else action
