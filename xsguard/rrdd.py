"""xsguard-rrdd: dom0's event-channel headroom as xcp-rrdd datasources, graphed by xapi.

A daemon in dom0 (systemd unit ``xsguard-rrdd``). It registers with xcp-rrdd over its UNIX
socket (XML-RPC, ``Plugin.register`` every reading, retried while xcp-rrdd is down) and, just
before each reading, writes the protocol v2 file ``Plugin.get_path`` named.

The figures are ``xsguard status``'s (``status.figures``, ``settle``, the ledger). What
dom0 can tell, it reads without xapi at every reading: lsevtchn, /proc/interrupts, the
ceilings, the ledger, the refusal counter. xapi is asked only for what dom0 cannot know:

- which VM each domain is (``VM.get_all_records_where`` for the VMs on this host), asked
  again only when the set of domains holding ports changes;
- whether a ledger VM not seen running is still starting here: one call for those VMs at
  each reading while there are some, none once xapi has said a VM is gone since its
  admission (an admission is a new ledger entry, so the answer holds for that entry).

With xapi unreachable, the dom0 figures still go out and every young ledger entry is
charged its whole need, as ``status`` does.
"""

import argparse
import http.client
import os
import signal
import socket
import sys
import threading
import time
import xmlrpc.client
from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple

from . import gather, ledger, probes, state, status
from .config import Config
from .config import load as load_config
from .deadline import Deadline
from .errors import XsguardError
from .model.charging import RUNNING, Entry, here_from_records, settle
from .model.rrdformat import DERIVE, HEADER, Datasource, encode, for_vm
from .xapi import Record, Xapi

UID = "xsguard"
FREQUENCY = "Five_Seconds"
LEAD = 2.0  # seconds before a reading the file is written: a reading, xapi's share included
XAPI_DEADLINE = 1.5  # seconds xapi may take in one reading; past them it is read without xapi
RETRY = (0.5, 5.0)  # first and longest wait between tries while xcp-rrdd is down

# name -> (figure of status.figures, description, units)
HOST_SOURCES = [
    ("xsguard_ports_used", "ports_used", "dom0 event-channel ports in use (lsevtchn 0)", "ports"),
    ("xsguard_ports_free", "ports_free",
     "dom0 event-channel ports left for guests: limit - margin - used - promised", "ports"),
    ("xsguard_port_limit", "port_limit", "Xen's event-channel port limit for dom0", "ports"),
    ("xsguard_irqs_used", "irqs_used", "dom0 Linux IRQ descriptors in use (/proc/interrupts)", "IRQs"),
    ("xsguard_irqs_free", "irqs_free", "dom0 IRQ descriptors left for guests: limit - margin - used - promised",
     "IRQs"),
    ("xsguard_irq_limit", "irq_limit", "dom0 Linux IRQ descriptor limit", "IRQs"),
    ("xsguard_promised", "promised", "ports promised to admitted VMs whose drivers have not connected yet",
     "ports"),
]
REFUSALS = ("xsguard_refusals", "VM starts, migrations and resumes this host refused", "refusals")
HELD = ("xsguard_ports_held", "dom0 event-channel ports held for this VM's domain", "ports")


def log(message: str) -> None:
    """One line to the journal (systemd keeps stderr)."""
    sys.stderr.write("xsguard-rrdd: %s\n" % message)
    sys.stderr.flush()


class DaemonXapi(Xapi):
    """xsguard-rrdd's session, named apart from the hooks' in xapi's logs."""

    originator = "xsguard-rrdd"


class XapiView:
    """What xapi says of the VMs on this host, asked as seldom as the figures allow."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.api: Optional[Xapi] = None
        self.deadline = Deadline(XAPI_DEADLINE)
        self.host_ref = ""
        self.domids: Optional[FrozenSet[int]] = None
        self.by_uuid: Dict[str, Record] = {}
        self.on_host: Dict[str, Record] = {}
        self.asked_at: Optional[float] = None
        self.gone: Set[Tuple[str, float]] = set()  # (vm uuid, admitted_at) xapi said are not here

    def _session(self) -> Xapi:
        self.deadline.expires = time.monotonic() + self.deadline.seconds
        if self.api is None:
            api = DaemonXapi(self.cfg.xapi["url"], self.deadline)
            api.__enter__()
            self.api = api
            self.host_ref = api.host_by_uuid(probes.this_host_uuid(self.cfg))[0]
        return self.api

    def drop(self) -> None:
        """Forget the session (xapi restarted or failed): the next reading logs in again."""
        if self.api is not None:
            self.api.__exit__(None, None, None)
        self.api = None
        self.domids = None

    def refresh(self, domids: FrozenSet[int]) -> Xapi:
        """The VMs on this host, asked again when the domains holding ports are not the last ones."""
        api = self._session()
        if domids != self.domids:
            asked_at = state.now()
            self.on_host = api.vms_on_host(self.host_ref)
            self.by_uuid = {str(r["uuid"]): r for r in self.on_host.values()}
            self.asked_at = asked_at
            self.domids = domids
        return api

    def settle_unresolved(self, api: Xapi, entries: Dict[str, Entry]) -> None:
        """Ask again about ledger VMs not seen running here, unless xapi said they are gone."""
        here = here_from_records(self.by_uuid, self.host_ref)
        unresolved = sorted(u for u, e in entries.items()
                            if (u not in here or here[u].state != RUNNING) and (u, e.admitted_at) not in self.gone)
        if not unresolved:
            return
        asked_at = state.now()
        found = api.vms_by_uuid(unresolved)
        for uuid in unresolved:
            if uuid in found:
                self.by_uuid[uuid] = found[uuid]
            else:
                self.by_uuid.pop(uuid, None)
        self.asked_at = asked_at
        here = here_from_records(self.by_uuid, self.host_ref)
        for uuid in unresolved:
            if uuid not in here and entries[uuid].admitted_at < asked_at:
                self.gone.add((uuid, entries[uuid].admitted_at))


class Reader:
    """One reading's datasources, from the same pieces as ``xsguard status``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.view = XapiView(cfg)
        self.boot_id = state.boot_id(cfg)
        self.kept: Tuple[Any, Dict[str, Entry]] = (None, {})  # the ledger as last read, and its files' stat
        self.without_xapi = False  # the last reading could not ask xapi

    def entries(self, api: Optional[Xapi], dom0: probes.Dom0) -> Dict[str, Entry]:
        """The ledger as ``status`` reads it; read again only when its files or the VMs on the host
        change, so that a ledger rebuilt from live state costs its calls once, not every reading."""
        path = self.cfg.ledger["path"]
        if api is None:
            loaded = ledger.load(path, self.boot_id, set_aside=False)
            return {u: e for u, e in (loaded.entries or {}).items() if e.need != ledger.UNKNOWN_NEED}
        view = self.view
        key = (_stat(path), _stat(path + ".pending"), view.asked_at)
        if key != self.kept[0]:
            control = next((r for r in view.on_host.values() if r.get("is_control_domain")), None)
            found = gather.Survey(dom0, view.on_host, view.asked_at or state.now())
            loaded = gather.load_entries(self.cfg, api, "", control, found, self.boot_id, set_aside=False)
            self.kept = (key, loaded.entries or {})
        return self.kept[1]

    def read(self) -> List[Datasource]:
        cfg = self.cfg
        dom0 = probes.read_dom0(cfg, Deadline(cfg.policy["deadline"]))
        held = dom0.ports.by_remote_domain
        api: Optional[Xapi] = None
        try:
            api = self.view.refresh(frozenset(held))
            entries = self.entries(api, dom0)
            self.view.settle_unresolved(api, entries)
            here = here_from_records(self.view.by_uuid, self.view.host_ref)
            asked_at = self.view.asked_at
            if self.without_xapi:
                log("xapi answers again")
            self.without_xapi = False
        except XsguardError as exc:
            if not self.without_xapi:
                log("xapi not consulted (%s): ledger VMs charged their whole need until it answers" % exc)
            self.without_xapi = True
            self.view.drop()
            api, here, asked_at = None, None, None
            entries = self.entries(None, dom0)
        _, promises = settle(entries, here, held, state.now(), cfg.ledger["ttl"], "", asked_at)
        shown = status.figures(dom0, promises, cfg.policy["margin"])
        sources = [Datasource(name, shown[key], what, units) for name, key, what, units in HOST_SOURCES
                   if shown[key] is not None]
        refused = state.counted(cfg, state.COUNT_REFUSED)
        sources.append(Datasource(REFUSALS[0], refused, REFUSALS[1], REFUSALS[2], DERIVE))
        for uuid, where in sorted((here or {}).items()):
            if where.state == RUNNING and where.domid is not None:
                sources.append(Datasource(HELD[0], held.get(where.domid, 0), HELD[1], HELD[2], owner=for_vm(uuid)))
        return sources


def _stat(path: str) -> Optional[Tuple[int, int, int]]:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


class RrddUnavailable(Exception):
    """xcp-rrdd did not answer, or refused a call."""


class _Socket(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class _Transport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.socket_path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _Socket(self.socket_path)


class Rrdd:
    """xcp-rrdd's plugin calls over its UNIX socket (XML-RPC, xapi's ``Status`` envelope)."""

    def __init__(self, path: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy("http://localhost/", transport=_Transport(path), allow_none=True)

    def call(self, method: str, *args: Any) -> Any:
        try:
            answer = getattr(self.proxy, method)(*args)
        except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
            raise RrddUnavailable("%s: %s" % (method, exc))
        if not isinstance(answer, dict) or answer.get("Status") != "Success":
            raise RrddUnavailable("%s refused: %r" % (method, answer))
        return answer.get("Value")


def write_file(path: str, data: bytes) -> None:
    """Write the file in place as xcp-rrdd expects: values and metadata first, the header last, so
    that a reading in between sees checksums that do not match and takes no update."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        split = len(HEADER) + 12  # the header string, both checksums and the count
        os.lseek(fd, split, os.SEEK_SET)
        os.write(fd, data[split:])
        os.ftruncate(fd, len(data))
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data[:split])
    finally:
        os.close(fd)


class Daemon:
    """Register, wait for the reading, write; until stopped."""

    def __init__(self, cfg: Config, stop: threading.Event) -> None:
        self.cfg = cfg
        self.stop = stop
        self.rrdd = Rrdd(cfg.rrdd["socket"])
        self.reader = Reader(cfg)
        self.path: Optional[str] = None

    def register(self) -> Tuple[str, float]:
        """The file to write and the seconds to the next reading; the path asked once per xcp-rrdd."""
        if self.path is None:
            header = self.rrdd.call("Plugin.get_header")
            if header != HEADER.decode():
                raise RrddUnavailable("xcp-rrdd expects files headed %r, not protocol v2's %r" % (header, HEADER))
            path = str(self.rrdd.call("Plugin.get_path", {"uid": UID}))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.path = path
        return self.path, float(self.rrdd.call("Plugin.register", {"uid": UID, "frequency": FREQUENCY}))

    def once(self, path: str) -> None:
        """One reading's file; what failed is logged and the reading skipped."""
        try:
            sources = self.reader.read()
        except XsguardError as exc:
            log("reading skipped: %s" % exc)
            return
        try:
            write_file(path, encode(time.time(), sources))
        except OSError as exc:
            log("cannot write %s: %s; its path is asked again" % (path, exc.strerror or exc))
            self.path = None

    def run(self) -> int:
        wait = RETRY[0]
        while not self.stop.is_set():
            try:
                registered_at = time.monotonic()
                path, next_reading = self.register()
            except (RrddUnavailable, OSError) as exc:
                log("xcp-rrdd not reached (%s); again in %.1fs" % (exc, wait))
                self.path = None
                self.stop.wait(wait)
                wait = min(wait * 2, RETRY[1])
                continue
            wait = RETRY[0]
            reading_at = registered_at + next_reading
            if self.stop.wait(max(reading_at - LEAD - time.monotonic(), 0)):
                break
            self.once(path)
            self.stop.wait(max(reading_at - time.monotonic(), 0) + 0.01)  # past the reading
        try:
            self.rrdd.call("Plugin.deregister", {"uid": UID})
        except RrddUnavailable:
            pass
        self.reader.view.drop()
        return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="xsguard-rrdd", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default $XSGUARD_CONFIG, then /etc/xsguard/xsguard.conf)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except XsguardError as exc:
        log(exc.message)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log("started, pid %d, xcp-rrdd at %s" % (os.getpid(), cfg.rrdd["socket"]))
    return Daemon(cfg, stop).run()


if __name__ == "__main__":
    sys.exit(main())
