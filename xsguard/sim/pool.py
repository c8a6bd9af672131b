"""The simulated pool: xapi's calls and xenopsd's VM lifecycle, over one Store.

Its parts: the hosts and xsguard installed on them (``hosts``), xapi's sessions, records and
placement (``database``), xenopsd's VM lifecycle (``xenopsd``), the operations across hosts
(``operations``)."""

import random
import tempfile
import threading
from typing import Any, Dict, List, Optional, Tuple

from . import guests, processes, roles
from .events import Events
from .hosts import PLUGINS_DIR, SimHost
from .operations import Operations
from .rrdd import Service, StandInRrdd
from .store import NULL, ApiError, Store


class Pool(Operations):
    """Everything the XML-RPC endpoint serves."""

    def __init__(self, root: Optional[str] = None, install_xsguard: bool = True,
                 plugins_dir: str = PLUGINS_DIR, interpreter: Optional[str] = None,
                 rrdd: bool = False, rrdd_interval: float = 5.0, seed: int = 0) -> None:
        self.owns_root = root is None  # a directory of its own: removed when the simulator stops
        self.root = root or tempfile.mkdtemp(prefix="xsguard-sim-")
        self.install_xsguard = install_xsguard
        self.plugins_dir = plugins_dir
        self.interpreter = interpreter or self._dom0_python()
        self.store = Store()
        self.lock = threading.RLock()
        self.hosts: Dict[str, SimHost] = {}
        self.sessions: Dict[str, Dict[str, Any]] = {}
        self.users: Dict[str, str] = {"root": roles.POOL_ADMIN}  # login name -> role
        self.call_delay = 0.0  # seconds every call but sim.* waits before it is answered (a slow xapi)
        self.random = random.Random(seed)  # xapi's placement draws at random: seeded, runs repeat
        self.events = Events(self.store, self.lock)
        self.guests: Dict[str, guests.Guest] = {}
        self.failures: List[Dict[str, str]] = []
        self.hook_log: List[Dict[str, Any]] = []
        self.calls: List[Tuple[str, str, Tuple[Any, ...]]] = []  # (originator, method, arguments but the session)
        self.busy: set = set()
        self.suspended: Dict[str, Tuple[int, List[str]]] = {}  # VM ref -> (its last domid, the actions it held)
        self.timers: List[threading.Timer] = []
        self.next_domid = 1
        self.url = ""
        self.pool_ref = self.store.create("pool", {"name_label": "sim-pool"})
        self.rrdd = rrdd  # each host runs a stand-in xcp-rrdd, and xsguard-rrdd where it is installed
        self.rrdd_interval = rrdd_interval
        self.rrdds: Dict[str, StandInRrdd] = {}  # by host ref
        self.services: Dict[str, Service] = {}  # xsguard-rrdd, by host ref

    def shutdown(self, vm_ref: str) -> None:
        with self.lock:
            vm = self.vm(vm_ref)
            if vm["power_state"] not in ("Running", "Paused"):
                raise ApiError("VM_BAD_POWER_STATE", vm_ref, "running", vm["power_state"].lower())
            if vm_ref in self.busy:
                raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
            self._destroy_domain(vm_ref)

    def reboot(self, vm_ref: str) -> None:
        """xenopsd's VM_reboot: the old domain destroyed, then the start atomics, pre-start hook first
        (ocaml/xenopsd/lib/xenops_server.ml:1415-1440, the hook at :1263-1265), with -reason none.

        While the hook runs xapi shows what it shows on a real host: the VM Running (xenopsd keeps
        the power state Running while it reboots, xenops_server.ml:3412-3416), resident_on this
        host under its OLD domid (an empty domid list is ignored, ocaml/xapi/xapi_xenops.ml:2186-2196;
        the domid becomes -1 only at Halted or Suspended, ocaml/xapi/xapi_vm_lifecycle.ml:922-930),
        and no reservation: scheduled_to_be_resident_on stays NULL (ocaml/xapi/message_forwarding.ml:2270).
        The old domain's channels are already closed in dom0. A refused hook leaves the VM Halted.
        """
        with self.lock:
            vm = self.vm(vm_ref)
            if vm["power_state"] != "Running":
                raise ApiError("VM_BAD_POWER_STATE", vm_ref, "running", vm["power_state"].lower())
            if vm_ref in self.busy:
                raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
            host = self.hosts[vm["resident_on"]]
            self.busy.add(vm_ref)
            host.dom0.release(int(vm["domid"]))  # the old domain is gone from dom0; xapi's record keeps it
            host.dom0.write_state()
            vm_uuid = vm["uuid"]
        try:
            with host.workers:
                processes.run_hooks(host.root, "vm-pre-start", vm_uuid, "none", host.config_path, self.hook_log)
                with self.lock:
                    self.store.get("host", host.ref)["resident_VMs"].remove(vm_ref)  # re-added with the new domain
                    self._build_domain(vm_ref, host)
        except Exception:
            with self.lock:
                vm = self.vm(vm_ref)
                resident = self.store.get("host", host.ref)["resident_VMs"]
                if vm_ref in resident:
                    resident.remove(vm_ref)
                vm.update({"power_state": "Halted", "resident_on": NULL, "domid": "-1"})
                self.set_devices_attached(vm, False)
            raise
        finally:
            with self.lock:
                self.busy.discard(vm_ref)

    def stop_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        for service in self.services.values():
            service.stop()
        for rrdd in self.rrdds.values():
            rrdd.stop()
        for host in self.hosts.values():
            host.close()
