"""The simulated pool: xapi's calls and xenopsd's VM lifecycle, over one Store."""

import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import uuid as uuid_mod
from typing import Any, Dict, List, Optional, Tuple

from . import guests, processes
from .dom0 import Dom0, NoSpace, action_name, lay_out
from .rrdd import UNIT, Service, StandInRrdd, install_unit
from .store import NULL, ApiError, Store
from .where import WhereSyntaxError, compile_where


def find_plugins() -> str:
    """Where xsguard's hook and plugin are: in the package (a wheel), else beside it (a checkout)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(package, "_plugins"), os.path.join(os.path.dirname(package), "plugins")):
        if os.path.isdir(os.path.join(candidate, "vm-pre-start")):
            return candidate
    return os.path.join(package, "_plugins")


PLUGINS_DIR = find_plugins()
XENOPSD_WORKERS = 4
HOOKS = ("vm-pre-start", "vm-pre-migrate", "vm-pre-resume")  # the hook directories xsguard installs
EVACUATE_BATCH_SIZE = 10  # xapi's default number of migrations an evacuation runs at once


class Guest:
    """How a guest behaves once started (``sim.set_guest``)."""

    def __init__(self) -> None:
        self.pv_drivers = True
        self.connect_delay = 0.0
        self.queues = 0  # netfront's max_queues; 0: its default, min(vCPUs, 8)
        self.rings = 0  # blkfront's max_queues; 0: its default, min(vCPUs, 4)
        self.ctrl_ring = False  # Windows' xenvif binds a control ring per NIC
        self.os_name = ""  # what its guest agent reports as os_version's name, once its drivers are up

    def update(self, values: Dict[str, Any]) -> None:
        for key, value in values.items():
            if key == "pv_drivers":
                self.pv_drivers = _truth(value)
            elif key == "connect_delay":
                self.connect_delay = float(value)
            elif key == "queues":
                self.queues = int(value)
            elif key == "rings":
                self.rings = int(value)
            elif key == "ctrl_ring":
                self.ctrl_ring = _truth(value)
            elif key == "os_name":
                self.os_name = str(value)
            else:
                raise ApiError("INVALID_VALUE", "guest." + key, value)

    @property
    def asks(self) -> guests.Asks:
        return guests.Asks(self.queues, self.rings, self.ctrl_ring)


def _truth(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "yes", "1")


class SimHost:
    """A host: its dom0, its root directory (dom0's files), its xenopsd worker pool."""

    def __init__(self, ref: str, root: str, dom0: Dom0) -> None:
        self.ref = ref
        self.root = root
        self.dom0 = dom0
        self.workers = threading.BoundedSemaphore(XENOPSD_WORKERS)
        self.config: Dict[str, str] = {}
        self.stack = guests.XS8  # what its guests hold (sim.set_dom0's ``stack``)
        self.syslog: List[str] = []
        self._syslog_socket = self._listen_syslog()

    def _listen_syslog(self) -> socket.socket:
        """dom0's syslog daemon: a datagram socket at <root>/dev/log, lines kept in order."""
        path = os.path.join(self.root, "dev", "log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)

        def receive() -> None:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                self.syslog.append(data.decode("utf-8", "replace"))

        threading.Thread(target=receive, name="syslog-%s" % ref_name(self.ref), daemon=True).start()
        return sock

    def close(self) -> None:
        self._syslog_socket.close()

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, "etc", "xsguard", "xsguard.conf")


class Pool:
    """Everything the XML-RPC endpoint serves."""

    def __init__(self, root: Optional[str] = None, install_xsguard: bool = True,
                 plugins_dir: str = PLUGINS_DIR, interpreter: Optional[str] = None,
                 rrdd: bool = False, rrdd_interval: float = 5.0) -> None:
        self.owns_root = root is None  # a directory of its own: removed when the simulator stops
        self.root = root or tempfile.mkdtemp(prefix="xsguard-sim-")
        self.install_xsguard = install_xsguard
        self.plugins_dir = plugins_dir
        self.interpreter = interpreter or self._dom0_python()
        self.store = Store()
        self.lock = threading.RLock()
        self.hosts: Dict[str, SimHost] = {}
        self.sessions: Dict[str, Dict[str, Any]] = {}
        self.guests: Dict[str, Guest] = {}
        self.failures: List[Dict[str, str]] = []
        self.hook_log: List[Dict[str, Any]] = []
        self.calls: List[Tuple[str, str]] = []  # (originator, method)
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

    # set-up

    def _dom0_python(self) -> str:
        """dom0's python3: this interpreter, with XenAPIPlugin on its path as dom0's has."""
        site = os.path.join(self.root, "dom0", "site-packages")
        os.makedirs(site, exist_ok=True)
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copy(os.path.join(here, "dom0_site", "XenAPIPlugin.py"), site)
        wrapper = os.path.join(self.root, "dom0", "python3")
        with open(wrapper, "w") as handle:
            handle.write('#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' % (site, sys.executable))
        os.chmod(wrapper, 0o755)
        return wrapper

    def install(self, host: SimHost, source: str, target: str) -> None:
        """Install one file from plugins/ into the host's /etc/xapi.d, as the RPM does."""
        with open(source) as handle:
            lines = handle.read().splitlines(True)
        if lines and lines[0].startswith("#!"):
            lines[0] = "#!%s\n" % self.interpreter
        path = os.path.join(host.root, "etc", "xapi.d", target)
        with open(path, "w") as handle:
            handle.writelines(lines)
        os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)

    def add_host(self, name: str, dom0: Dict[str, Any], root: Optional[str] = None) -> str:
        """A host; its dom0's files go under ``root`` (default: a directory of the pool's own,
        or a tree where a package was installed, to run what it installed)."""
        with self.lock:
            host_uuid = str(uuid_mod.uuid4())
            root = root or os.path.join(self.root, "hosts", name or host_uuid)
            lay_out(root)
            ref = self.store.create("host", {"uuid": host_uuid, "name_label": name, "hostname": name})
            sim_dom0 = Dom0(root, **_dom0_args(dom0))
            host = SimHost(ref, root, sim_dom0)
            self.hosts[ref] = host
            ctrl = self.store.create("VM", {
                "name_label": "Control domain on host: %s" % name, "is_control_domain": True,
                "power_state": "Running", "domid": "0", "resident_on": ref,
                "VCPUs_max": str(sim_dom0.vcpus), "VCPUs_at_startup": str(sim_dom0.vcpus),
                "domain_type": "pv", "memory_static_max": str(4 * 1024 ** 3),
            })
            self.store.get("host", ref)["control_domain"] = ctrl
            self.store.get("host", ref)["resident_VMs"].append(ctrl)
            if self.store.get("pool", self.pool_ref)["master"] == NULL:
                self.store.get("pool", self.pool_ref)["master"] = ref
            with open(os.path.join(root, "etc", "xensource-inventory"), "w") as handle:
                handle.write("PRODUCT_BRAND='XCP-ng'\nINSTALLATION_UUID='%s'\nCONTROL_DOMAIN_UUID='%s'\n"
                             % (host_uuid, self.store.get("VM", ctrl)["uuid"]))
            lsevtchn = os.path.join(root, "usr", "libexec", "xen", "bin", "lsevtchn")
            with open(lsevtchn, "w") as handle:
                handle.write('#!/bin/sh\ncase "${1:-0}" in\n0) exec cat %s ;;\n*) echo "lsevtchn: domain $1:'
                             ' no such domain" >&2; exit 1 ;;\nesac\n' % os.path.join(root, "run", "sim", "lsevtchn.0"))
            os.chmod(lsevtchn, 0o755)
            sim_dom0.write_boot_files()
            self.write_xsguard_config(host)
            if self.install_xsguard:
                self.install_plugins(host)
            if self.rrdd:
                self.start_rrdd(host)
            return ref

    def install_plugins(self, host: SimHost) -> None:
        """Install xsguard's hook and plugin from plugins/ on one host."""
        if not os.path.isdir(os.path.join(self.plugins_dir, "vm-pre-start")):
            raise ApiError("OPERATION_NOT_ALLOWED", "xsguard's hook and plugin are not at %s: reinstall xsguard"
                           " (its wheel carries them), or start the simulator bare" % self.plugins_dir)
        for hook in HOOKS:
            source = os.path.join(self.plugins_dir, hook)
            if not os.path.isdir(source):
                continue
            os.makedirs(os.path.join(host.root, "etc", "xapi.d", hook), exist_ok=True)
            for entry in sorted(os.listdir(source)):
                self.install(host, os.path.join(source, entry), os.path.join(hook, entry))
        self.install(host, os.path.join(self.plugins_dir, "xsguard"), os.path.join("plugins", "xsguard"))

    def start_rrdd(self, host: SimHost) -> None:
        """The host's xcp-rrdd, then, as systemd at boot, xsguard-rrdd from its unit file if installed
        (from packaging/ on hosts that get xsguard from a source checkout)."""
        self.rrdds[host.ref] = StandInRrdd(host.root, self.rrdd_interval).start()
        host.config["rrdd.socket"] = self.rrdds[host.ref].socket_path
        self.write_xsguard_config(host)
        if self.install_xsguard:
            install_unit(host.root, self.interpreter)
        if os.path.exists(os.path.join(host.root, UNIT)):
            self.services[host.ref] = Service(host.root, processes.environment(host.config_path)).start()

    def write_xsguard_config(self, host: SimHost) -> None:
        r = host.root
        values = {
            "dom0.lsevtchn": os.path.join(r, "usr", "libexec", "xen", "bin", "lsevtchn"),
            "dom0.proc_interrupts": os.path.join(r, "proc", "interrupts"),
            "dom0.kernel_log": os.path.join(r, "var", "log", "kern.log"),
            "dom0.kernel_ring": os.path.join(r, "dev", "kmsg"),
            "dom0.proc_stat": os.path.join(r, "proc", "stat"),
            "dom0.cmdline": os.path.join(r, "proc", "cmdline"),
            "dom0.boot_id": os.path.join(r, "proc", "sys", "kernel", "random", "boot_id"),
            "dom0.hypervisor": os.path.join(r, "sys", "hypervisor"),
            "dom0.sys_module": os.path.join(r, "sys", "module"),
            "dom0.inventory": os.path.join(r, "etc", "xensource-inventory"),
            "xapi.url": self.url or "http://127.0.0.1:1/",
            "ledger.path": os.path.join(r, "var", "lib", "xsguard", "ledger.json"),
            "log.file": os.path.join(r, "var", "log", "xsguard", "decisions.log"),
            "log.syslog_socket": os.path.join(r, "dev", "log"),
        }
        values.update(host.config)
        sections: Dict[str, List[str]] = {}
        for dotted, value in sorted(values.items()):
            section, _, key = dotted.partition(".")
            sections.setdefault(section, []).append("%s = %s\n" % (key, value))
        text = "".join("[%s]\n%s\n" % (s, "".join(lines)) for s, lines in sections.items())
        with open(host.config_path, "w") as handle:
            handle.write(text)

    def set_url(self, url: str) -> None:
        self.url = url
        with self.lock:
            for host in self.hosts.values():
                self.write_xsguard_config(host)

    # sessions

    def login(self, user: str, password: str, version: str = "", originator: str = "") -> str:
        ref = "OpaqueRef:%s" % uuid_mod.uuid4()
        with self.lock:
            self.sessions[ref] = {"user": user, "originator": originator,
                                  "host": self.store.get("pool", self.pool_ref)["master"]}
        return ref

    def check_session(self, ref: str, method: str) -> Dict[str, Any]:
        with self.lock:
            session = self.sessions.get(ref)
            if session is None:
                raise ApiError("SESSION_INVALID", ref)
            self.calls.append((session["originator"], method))
            return session

    def logout(self, ref: str) -> None:
        with self.lock:
            self.sessions.pop(ref, None)

    # helpers

    def host(self, ref: str) -> SimHost:
        self.store.get("host", ref)
        return self.hosts[ref]

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

    def guest(self, vm_uuid: str) -> Guest:
        return self.guests.setdefault(vm_uuid, Guest())

    # creation

    def create_vm(self, record: Dict[str, Any]) -> str:
        fields = {k: v for k, v in record.items() if k not in ("uuid", "power_state", "domid",
                                                               "resident_on", "VBDs", "VIFs")}
        for key in ("VCPUs_max", "VCPUs_at_startup", "memory_static_max"):
            if key in fields:
                fields[key] = str(int(fields[key]))
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

    # the VM lifecycle

    def start(self, vm_ref: str, host_ref: Optional[str] = None) -> None:
        with self.lock:
            vm = self.vm(vm_ref)
            self._assert_startable(vm_ref, vm)
            if host_ref is None:
                host_ref = self._choose_host(vm_ref, vm)
            else:
                self._assert_enabled(host_ref)
                self._assert_memory(host_ref, vm)
            self.busy.add(vm_ref)
        try:
            self._start_on(vm_ref, host_ref, reason="none")
        finally:
            with self.lock:
                self.busy.discard(vm_ref)

    def _assert_startable(self, vm_ref: str, vm: Dict[str, Any]) -> None:
        if vm["is_control_domain"] or vm["is_a_template"] or vm["is_a_snapshot"]:
            raise ApiError("OPERATION_NOT_ALLOWED", "VM %s is a template, snapshot or control domain" % vm_ref)
        if vm_ref in self.busy:
            raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
        if vm["power_state"] != "Halted":
            raise ApiError("VM_BAD_POWER_STATE", vm_ref, "halted", vm["power_state"].lower())

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
        needed = int(vm["memory_static_max"])
        affinity = vm["affinity"]
        if affinity in self.hosts and self._free_memory(affinity) >= needed and \
                self.store.get("host", affinity)["enabled"]:
            return affinity
        candidates = [(self._free_memory(h), self.store.get("host", h)["name_label"], h)
                      for h in self.hosts if self.store.get("host", h)["enabled"]]
        fitting = [c for c in candidates if c[0] >= needed]
        if not fitting:
            raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", str(needed),
                           str(max((c[0] for c in candidates), default=0)))
        return sorted(fitting, key=lambda c: (-c[0], c[1]))[0][2]

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

    # hosts in and out of service, migrations, suspend and resume

    def _assert_enabled(self, host_ref: str) -> None:
        if not self.store.get("host", host_ref)["enabled"]:
            raise ApiError("HOST_DISABLED", host_ref)
        self.host(host_ref)

    def set_enabled(self, host_ref: str, enabled: bool) -> None:
        """host.disable / host.enable: a disabled host takes no new VM (starts, migrations, resumes)."""
        with self.lock:
            self.host(host_ref)
            self.store.get("host", host_ref)["enabled"] = enabled

    def bound_actions(self, host: SimHost, domid: int) -> List[str]:
        """The actions of the ports one domain holds in dom0, in the order it bound them."""
        return [host.dom0.ports[n].action for n in host.dom0.guest_ports.get(domid, [])]

    def pool_migrate(self, vm_ref: str, host_ref: str, options: Optional[Dict[str, Any]] = None) -> None:
        """VM.pool_migrate: memory reserved on the destination, the source's vm-pre-migrate hooks,
        then the destination binds what the domain held on the source before the source releases it."""
        with self.lock:
            vm = self.vm(vm_ref)
            self._assert_migratable(vm_ref, vm)
            self._assert_enabled(host_ref)
            self._assert_memory(host_ref, vm)
            vm["scheduled_to_be_resident_on"] = host_ref
            self.busy.add(vm_ref)
            source = self.hosts[vm["resident_on"]]
            domid = int(vm["domid"])
        try:
            self._pre_migrate(vm, source, domid)
            with self.lock:
                self._move_domain(vm_ref, source, self.hosts[host_ref], domid)
        finally:
            with self.lock:
                self.vm(vm_ref)["scheduled_to_be_resident_on"] = NULL
                self.busy.discard(vm_ref)

    def _pre_migrate(self, vm: Dict[str, Any], source: SimHost, domid: int) -> None:
        """The source's xenopsd runs vm-pre-migrate in one of its workers (XAPI_HOOK_FAILED ends it)."""
        with source.workers:
            processes.run_hooks(source.root, "vm-pre-migrate", vm["uuid"], "source", source.config_path,
                                self.hook_log, domid)

    def _assert_migratable(self, vm_ref: str, vm: Dict[str, Any]) -> None:
        if vm["is_control_domain"]:
            raise ApiError("OPERATION_NOT_ALLOWED", "VM %s is a control domain" % vm_ref)
        if vm_ref in self.busy:
            raise ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm_ref)
        if vm["power_state"] != "Running":
            raise ApiError("VM_BAD_POWER_STATE", vm_ref, "running", vm["power_state"].lower())

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

    def migrate_send(self, vm_ref: str, dest: Dict[str, Any]) -> None:
        """VM.migrate_send to another pool: the source's vm-pre-migrate hooks, then the VM leaves."""
        with self.lock:
            vm = self.vm(vm_ref)
            self._assert_migratable(vm_ref, vm)
            self.busy.add(vm_ref)
            source = self.hosts[vm["resident_on"]]
            domid = int(vm["domid"])
        try:
            self._pre_migrate(vm, source, domid)
            with self.lock:
                self._destroy_domain(vm_ref)
                self.destroy_vm(vm_ref)
        finally:
            with self.lock:
                self.busy.discard(vm_ref)

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
        """host.evacuate: the plan, then ``batch_size`` migrations at once; the first failure fails it."""
        plan = self.evacuation_plan(host_ref)
        for start in range(0, len(plan), max(batch_size, 1)):
            errors: List[ApiError] = []

            threads = [threading.Thread(target=self._migrate_noting, args=pair + (errors,))
                       for pair in plan[start:start + batch_size]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]

    def _migrate_noting(self, vm_ref: str, host_ref: str, errors: List[ApiError]) -> None:
        try:
            self.pool_migrate(vm_ref, host_ref)
        except ApiError as exc:
            errors.append(exc)

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
        """VM.resume / VM.resume_on: a new domain with its xenstore and console channels, the
        vm-pre-resume hooks with -vmdomid, then the devices are restored; a refusal leaves it Suspended."""
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
                    domid = self._new_domain(vm, host, held[:2], old_domid, "resume")
                try:
                    processes.run_hooks(host.root, "vm-pre-resume", vm["uuid"], "none", host.config_path,
                                        self.hook_log, domid)
                    with self.lock:
                        host.dom0.bind(domid, [_renamed(a, old_domid, domid) for a in held[2:]])
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

    def over_admitted(self) -> List[Dict[str, str]]:
        with self.lock:
            return [dict(f) for f in self.failures]

    def set_stack(self, host_ref: str, name: str) -> None:
        """What the host's guests hold: ``xs8``, or the 2013 ``xs62`` and ``xs61`` (sim.set_dom0's ``stack``)."""
        try:
            stack = guests.stack_named(name)
        except ValueError as exc:
            raise ApiError("INVALID_VALUE", "stack", str(exc))
        with self.lock:
            self.host(host_ref).stack = stack

    def stop_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        for service in self.services.values():
            service.stop()
        for rrdd in self.rrdds.values():
            rrdd.stop()
        for host in self.hosts.values():
            host.close()


def _renamed(action: str, old_domid: int, domid: int) -> str:
    """An action name of an earlier domain as the new domain's (netback names carry the domid)."""
    prefix = "vif%d." % old_domid
    return "vif%d.%s" % (domid, action[len(prefix):]) if action.startswith(prefix) else action


def ref_name(ref: str) -> str:
    return ref.rsplit(":", 1)[-1][:8]


def _dom0_args(dom0: Dict[str, Any]) -> Dict[str, Any]:
    args: Dict[str, Any] = {}
    for key in ("vcpus", "port_limit", "irq_limit", "baseline_ports"):
        if key in dom0 and str(dom0[key]) != "":
            args[key] = int(dom0[key])
    for key in ("abi", "xen_version"):
        if key in dom0:
            args[key] = str(dom0[key])
    unknown = set(dom0) - {"vcpus", "port_limit", "irq_limit", "baseline_ports", "abi", "xen_version",
                           "ports_used", "irqs_used", "by_remote_domain"}
    if unknown:
        raise ApiError("INVALID_VALUE", "dom0", ", ".join(sorted(unknown)))
    return args

