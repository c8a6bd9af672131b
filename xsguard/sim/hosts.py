"""The simulated pool's hosts, and xsguard installed on them as the RPM installs it: each host's
dom0 files, its xsguard config, its hook and plugin, its xcp-rrdd and xsguard-rrdd."""

import os
import shlex
import shutil
import socket
import stat
import sys
import threading
import uuid as uuid_mod
from typing import Any, Dict, List, Optional, Tuple

from . import guests, processes, shipped
from .dom0 import Dom0, lay_out
from .events import Events
from .rrdd import UNIT, Service, StandInRrdd, install_unit
from .store import NULL, ApiError, Store

PLUGINS_DIR = shipped.find("_plugins", "plugins", "vm-pre-start")  # the hooks and the plugin
XENOPSD_WORKERS = 4
HOOKS = ("vm-pre-start", "vm-pre-migrate", "vm-pre-resume")  # the hook directories xsguard installs


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


class Hosts:
    """The pool's state (set by ``Pool.__init__``) and its hosts."""

    root: str
    owns_root: bool
    install_xsguard: bool
    plugins_dir: str
    interpreter: str
    store: Store
    lock: Any
    hosts: Dict[str, SimHost]
    sessions: Dict[str, Dict[str, Any]]
    users: Dict[str, str]
    call_delay: float
    random: Any
    events: Events
    guests: Dict[str, guests.Guest]
    failures: List[Dict[str, str]]
    hook_log: List[Dict[str, Any]]
    calls: List[Tuple[str, str, Tuple[Any, ...]]]
    busy: set
    suspended: Dict[str, Tuple[int, List[str]]]
    timers: List[threading.Timer]
    next_domid: int
    url: str
    pool_ref: str
    rrdd: bool
    rrdd_interval: float
    rrdds: Dict[str, StandInRrdd]
    services: Dict[str, Service]

    # set-up
    def _dom0_python(self) -> str:
        """dom0's python3: this interpreter, with XenAPIPlugin on its path as dom0's has."""
        site = os.path.join(self.root, "dom0", "site-packages")
        os.makedirs(site, exist_ok=True)
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copy(os.path.join(here, "dom0_site", "XenAPIPlugin.py"), site)
        wrapper = os.path.join(self.root, "dom0", "python3")
        # under ``coverage run`` (make test), what the hosts run is measured too: xapi and xenopsd give
        # hooks and plugins an environment of their own, so the wrapper carries coverage's setting
        measured = os.environ.get("COVERAGE_PROCESS_CONFIG")
        carried = "COVERAGE_PROCESS_CONFIG=%s " % shlex.quote(measured) if measured else ""
        with open(wrapper, "w") as handle:
            handle.write('#!/bin/sh\n%sPYTHONPATH=%s exec %s "$@"\n' % (carried, site, sys.executable))
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
            sim_dom0 = Dom0(root, **dom0_args(dom0))
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
        host.config["rrdd.period"] = str(self.rrdd_interval)
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

    # helpers
    def host(self, ref: str) -> SimHost:
        self.store.get("host", ref)
        return self.hosts[ref]

    def set_stack(self, host_ref: str, name: str) -> None:
        """What the host's guests hold: ``xs8``, or the 2013 ``xs62`` and ``xs61`` (sim.set_dom0's ``stack``)."""
        try:
            stack = guests.stack_named(name)
        except ValueError as exc:
            raise ApiError("INVALID_VALUE", "stack", str(exc))
        with self.lock:
            self.host(host_ref).stack = stack


def ref_name(ref: str) -> str:
    return ref.rsplit(":", 1)[-1][:8]


def dom0_args(dom0: Dict[str, Any]) -> Dict[str, Any]:
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
