"""The simulated pool's operations across hosts: migrations (inside the pool and out of it),
evacuations, a host that dies."""

import queue
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import processes, roles
from .hosts import SimHost
from .store import NULL, ApiError
from .xenopsd import Xenopsd

# xapi's default window of migrations an evacuation runs (xen-api ocaml/xapi/xapi_globs.ml:1025)
EVACUATE_BATCH_SIZE = 10


class Operations(Xenopsd):
    """Migrations, evacuations, a host that dies."""

    def pool_migrate(self, vm_ref: str, host_ref: str, options: Optional[Dict[str, Any]] = None) -> None:
        """VM.pool_migrate: memory reserved on the destination, the source's vm-pre-migrate hooks,
        then the destination binds what the domain held on the source before the source releases it."""
        self._migrate(vm_ref, host_ref,
                      lambda source, domid: self._move_domain(vm_ref, source, self.hosts[host_ref], domid))

    def _migrate(self, vm_ref: str, host_ref: Optional[str], complete: Callable[[SimHost, int], None]) -> None:
        """The source's part of every migration: the VM checked and marked busy (inside the pool, the
        destination checked and reserved too: scheduled_to_be_resident_on, as xen-api
        ocaml/xapi/message_forwarding.ml:1561-1577 allocate_vm_to_host sets it), the source's
        vm-pre-migrate hooks, then ``complete`` under the lock; the marks are undone whatever happens."""
        with self.lock:
            vm = self.vm(vm_ref)
            self._assert_migratable(vm_ref, vm)
            if host_ref is not None:
                self._assert_enabled(host_ref)
                self._assert_memory(host_ref, vm)
                vm["scheduled_to_be_resident_on"] = host_ref
            self.busy.add(vm_ref)
            source = self.hosts[vm["resident_on"]]
            domid = int(vm["domid"])
        try:
            self._pre_migrate(vm, source, domid)
            with self.lock:
                complete(source, domid)
        finally:
            with self.lock:
                if host_ref is not None:
                    self.vm(vm_ref)["scheduled_to_be_resident_on"] = NULL
                self.busy.discard(vm_ref)

    def _pre_migrate(self, vm: Dict[str, Any], source: SimHost, domid: int) -> None:
        """The source's xenopsd runs vm-pre-migrate in one of its workers (XAPI_HOOK_FAILED ends it)."""
        with source.workers:
            processes.run_hooks(source.root, "vm-pre-migrate", vm["uuid"], "source", source.config_path,
                                self.hook_log, domid)

    def _move_domain(self, vm_ref: str, source: SimHost, target: SimHost, old_domid: int) -> None:
        """The destination binds the same ports the source's domain holds, then the source releases."""
        vm = self.vm(vm_ref)
        held = self.bound_actions(source, old_domid)
        domid = self._new_domain(vm, target, held, old_domid, "migration")
        source.dom0.release(old_domid)
        source.dom0.write_state()
        resident = self.store.get("host", source.ref)["resident_VMs"]
        if vm_ref in resident:
            resident.remove(vm_ref)
        vm.update({"domid": str(domid), "resident_on": target.ref})
        self.store.get("host", target.ref)["resident_VMs"].append(vm_ref)
        self._connect_later(vm_ref, target, domid, held)

    def migrate_receive(self, host_ref: str, network_ref: str, session: str) -> Dict[str, str]:
        """host.migrate_receive: where to send a VM to ``host_ref``, as xen-api
        ocaml/xapi/xapi_host.ml:2554-2630 builds it (a new session on that host; the SM and xenops
        URLs on the address of the host's PIF on ``network``: the simulator has no PIFs, so the
        network only has to exist, and the host's address stands in)."""
        with self.lock:
            self.host(host_ref)
            self.store.get("network", network_ref)
            address = self.store.get("host", host_ref)["address"]
            master = self.store.get("host", self.store.get("pool", self.pool_ref)["master"])["address"]
            new_session = self.login(self.sessions[session]["user"], "", originator="migrate_receive",
                                     local=self.sessions[session]["role"] == roles.POOL_ADMIN)
        return {"SM": "http://%s/services/SM?session_id=%s" % (address, new_session), "host": host_ref,
                "xenops": "http://%s/services/xenops?session_id=%s" % (address, new_session),
                "session_id": new_session, "master": "http://%s/" % master}

    def migrate_send(self, vm_ref: str, dest: Dict[str, Any]) -> None:
        """VM.migrate_send: inside the pool when ``dest["host"]`` is a host of this pool (a storage
        migration, xen-api ocaml/xapi/message_forwarding.ml:2697-2704), else to another pool."""
        if dest.get("host") in self.hosts:
            self._storage_migrate(vm_ref, dest["host"])
        else:
            self._migrate_away(vm_ref)

    def _storage_migrate(self, vm_ref: str, host_ref: str) -> None:
        """A storage migration inside the pool: the in-pool destination reserved
        (scheduled_to_be_resident_on, xen-api ocaml/xapi/message_forwarding.ml:2742-2757), the disks
        mirrored first (ocaml/xapi/xapi_vm_migrate.ml:1593-1596, nothing to copy here), then the
        source's xenopsd migrates the VM, running vm-pre-migrate (ocaml/xapi/xapi_vm_migrate.ml:1763-1766).
        xapi does not translate xenopsd's error on this path (ocaml/xapi/xapi_vm_migrate.ml:1927-1928):
        a hook's refusal reaches the caller as INTERNAL_ERROR carrying the printed Xenopsd_error
        (ocaml/xapi/exnHelper.ml:82, printer ocaml/xapi-idl/xen/xenops_interface.ml:98-109)."""
        try:
            self.pool_migrate(vm_ref, host_ref)  # the same reservation, hook and move
        except ApiError as exc:
            if exc.description[0] != "XAPI_HOOK_FAILED":
                raise
            raise ApiError("INTERNAL_ERROR", hook_failed_text(exc.description[1:]))

    def _migrate_away(self, vm_ref: str) -> None:
        """VM.migrate_send to another pool: the source's vm-pre-migrate hooks, then the VM leaves."""
        self._migrate(vm_ref, None, lambda source, domid: self._leave(vm_ref))

    def _leave(self, vm_ref: str) -> None:
        self._destroy_domain(vm_ref)
        self.destroy_vm(vm_ref)

    def evacuation_plan(self, host_ref: str) -> List[Tuple[str, str]]:
        """xapi's memory-only plan: each VM (largest memory first) onto the enabled host with most free memory."""
        with self.lock:
            self.host(host_ref)
            free = {h: self._free_memory(h) for h in self.hosts
                    if h != host_ref and self.store.get("host", h)["enabled"]}
            vms = sorted(((int(v["memory_static_max"]), r) for r, v in self.store.tables["VM"].items()
                          if v["resident_on"] == host_ref and not v["is_control_domain"]), reverse=True)
            plan = []
            for memory, vm_ref in vms:
                best = max(free, key=lambda h: (free[h], h), default=None)
                if best is None or free[best] < memory:
                    raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", str(memory),
                                   str(free[best] if best is not None else 0))
                free[best] -= memory
                plan.append((vm_ref, best))
            return plan

    def evacuate(self, host_ref: str, batch_size: int = EVACUATE_BATCH_SIZE) -> None:
        """host.evacuate as xen-api ocaml/xapi/xapi_host.ml:623-776 runs it: the plan, then a sliding
        window of ``batch_size`` migrations (a new one starts as soon as one ends, :670-744); a
        migration that failed with VM_BAD_POWER_STATE is ignored (:684-685), any other failure fails
        the evacuation (:686-687; xapi returns at once, the simulator first lets the migrations under
        way end, so that what it leaves is settled); then no VM may be left on the host (:767-776)."""
        plan = self.evacuation_plan(host_ref)
        window = max(batch_size, 1)
        done: "queue.Queue[Optional[ApiError]]" = queue.Queue()

        def migrate(vm_ref: str, target: str) -> None:
            try:
                self.pool_migrate(vm_ref, target)
                done.put(None)
            except ApiError as exc:
                done.put(exc)

        pending = list(plan)
        running = 0
        error: Optional[ApiError] = None
        while pending or running:
            while pending and running < window and error is None:
                threading.Thread(target=migrate, args=pending.pop(0), daemon=True).start()
                running += 1
            if not running:
                break
            outcome = done.get()
            running -= 1
            if outcome is not None and outcome.description[0] != "VM_BAD_POWER_STATE" and error is None:
                error = outcome
        if error is not None:
            raise error
        with self.lock:
            left = [r for r in self.store.get("host", host_ref)["resident_VMs"] if not self.vm(r)["is_control_domain"]]
        if left:
            raise ApiError("INTERNAL_ERROR", "evacuate: %d VMs are still resident on %s" % (len(left), host_ref))

    def fail_host(self, host_ref: str) -> List[str]:
        """The host dies: its VMs' domains vanish (HA then restarts them elsewhere)."""
        with self.lock:
            self.host(host_ref)
            gone = [r for r, v in self.store.tables["VM"].items()
                    if v["resident_on"] == host_ref and not v["is_control_domain"]]
            for ref in gone:
                self._destroy_domain(ref)
            self.store.get("host", host_ref)["enabled"] = False
            return gone


def hook_failed_text(params: List[str]) -> str:
    """xenopsd's Hook_failed (script, reason, stdout, exit code) as OCaml prints it: the registered printer
    (xen-api ocaml/xapi-idl/xen/xenops_interface.ml:98-109) over ocaml-rpc's Rpc.to_string of the
    marshalled variant, a tag and a 4-tuple (mirage/ocaml-rpc src/lib/rpc.ml, to_string: S(..) for a
    string, [a;b] for a list)."""
    return "Xenops_interface.Xenopsd_error([S(Hook_failed);[%s]])" % ";".join("S(%s)" % p for p in params)
