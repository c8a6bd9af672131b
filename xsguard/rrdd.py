"""xsguard-rrdd: dom0's event-channel headroom as xcp-rrdd datasources, graphed by xapi.

A daemon in dom0 (systemd unit ``xsguard-rrdd``), a plugin of xcp-rrdd as xen-api's own are
(xen-api ocaml/xcp-rrdd/lib/plugin/reporter.ml, reporter_local.ml). Over xcp-rrdd's UNIX socket
(XML-RPC) it asks ``Plugin.get_header`` (a nil: the one unit parameter) and ``Plugin.get_path
{uid}`` once; it creates the file there whole, at a fixed size padded for the largest set of
datasources it may write (``MAX_VMS`` running VMs), under a ``.tmp`` name renamed into place, so
that xcp-rrdd's discovery registers it as protocol v2 and maps it at that size; then, at every
reading, ``Plugin.Local.register {uid, info: Five_Seconds, protocol: V2}`` (registers it again
after xcp-rrdd restarted; answers the seconds to the next reading) and, ``LEAD`` seconds before
the reading, the file written in place. A file removed, replaced, or too small for the datasources
(more VMs than it was sized for) is created anew and registered again before the next reading.

The figures are ``xsguard status``'s (``status.figures``, ``settle``, the ledger). What
dom0 can tell, it reads without xapi at every reading: lsevtchn, /proc/interrupts, the
ceilings, the ledger, the refusal counter. xapi is asked only for what dom0 cannot know, in one
session kept for the daemon's life (XenAPI logs in again by itself on SESSION_INVALID):

- which VM each domain is (``VM.get_all_records_where`` for the VMs on this host), asked
  again only when the set of domains holding ports changes;
- whether a ledger VM not seen running is still starting here: one call for those VMs at
  each reading while there are some, none once xapi has said a VM is gone since its
  admission (an admission is a new ledger entry, so the answer holds for that entry).
- what a running VM holds beyond its need, written to its record (``learn.Learner``): asked
  only about the VMs whose domain holds a new count of ports, written only on a new maximum.
  A write that fails is one journal line and is tried again at the next reading; the
  reading's figures go out all the same.

The VMs xapi shows on this host without a domain here (rebooting, arriving by migration) are
charged as ``status`` charges them (``gather.seen_as``).

With xapi unreachable, the dom0 figures still go out and every young ledger entry is
charged its whole need, as ``status`` does.
"""

import argparse
import math
import os
import signal
import sys
import threading
import time
import xmlrpc.client

from . import gather, learn, ledger, probes, state, status
from .config import Config
from .config import load as load_config
from .deadline import Deadline
from .errors import XapiFailure, XapiUnreachable, XsguardError
from .model.charging import RUNNING, Entry, Here, here_from_records, settle
from .model.rrdformat import DERIVE, HEAD_BYTES, HEADER, HOST, Datasource, encode, for_vm
from .unixhttp import UnixConnection
from .xapi import Xapi

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Tuple

    from .xapi import Record

UID = "xsguard"
FREQUENCY = "Five_Seconds"  # the one Rrd.sampling_frequency (xen-api ocaml/libs/xapi-rrd/lib/rrd.ml:43)
PROTOCOL = "V2"
LEAD = 2.0  # seconds before a reading the file is written: a reading, xapi's share included
FLOOR = 0.1  # the shortest wait for a reading, however late xcp-rrdd says it is (reporter.ml:86-91)
MAX_VMS = 1024  # xcp-rrdd's max_supported_vms (xen-api ocaml/xapi-idl/rrd/rrd_interface.ml:32)
PAGE = 4096  # the file is a whole number of pages, as xen-api's own plugins' (rrd_file_writer.ml:31-32)
XAPI_DEADLINE = 1.5  # seconds xapi may take in one reading; past them it is read without xapi
RETRY = (0.5, 5.0)  # first and longest wait between tries while xcp-rrdd is down
LOGIN_RETRY = (5.0, 300.0)  # first and longest wait between two logins xapi did not answer
REASK_AFTER = 60.0  # seconds: the VMs on the host are asked again at least this often (``XapiView.refresh``)
RPC_TIMEOUT = 5.0  # seconds one call to xcp-rrdd may take
REFUSED = "refused"

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

    def __init__(self, cfg: Config, clock: "Callable[[], float]" = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.api: Optional[Xapi] = None
        self.deadline = Deadline(XAPI_DEADLINE)
        self.host_ref = ""
        self.domids: Optional[FrozenSet[int]] = None
        self.by_uuid: Dict[str, Record] = {}
        self.on_host: Dict[str, Record] = {}
        self.asked_at: Optional[float] = None
        self.asked_on_clock = 0.0  # ``clock()`` when the VMs on the host were last asked
        self.gone: Set[Tuple[str, float]] = set()  # (vm uuid, admitted_at) xapi said are not here
        self.login_wait = LOGIN_RETRY[0]
        self.login_after = 0.0  # monotonic time before which no login is tried again

    def _session(self) -> Xapi:
        """The daemon's one session: logged in once; after a login xapi did not answer, not tried again
        for 5 s doubling to 5 min (a login xapi completes after xsguard gave up leaves a session)."""
        now = self.clock()
        self.deadline.expires = time.monotonic() + self.deadline.seconds
        if self.api is None:
            if now < self.login_after:
                raise XapiUnreachable("xapi did not answer a login: the next in %.0fs" % (self.login_after - now))
            api = DaemonXapi(self.cfg.xapi.url, self.deadline)
            try:
                api.__enter__()
            except XsguardError:
                self.login_after = now + self.login_wait
                self.login_wait = min(self.login_wait * 2, LOGIN_RETRY[1])
                raise
            self.login_wait = LOGIN_RETRY[0]
            self.api = api
        if not self.host_ref:
            self.host_ref = self.api.host_by_uuid(probes.this_host_uuid(self.cfg))[0]
        return self.api

    def failed(self, exc: XsguardError) -> None:
        """A call failed: the session is kept (a slow or restarting xapi), unless xapi said it is no
        longer valid and XenAPI could not log in again: then the next reading logs in."""
        if isinstance(exc, XapiFailure) and exc.details[:1] == ["SESSION_INVALID"]:
            self.api = None
            self.domids = None

    def drop(self) -> None:
        """Log out (the daemon stops)."""
        if self.api is not None:
            self.api.__exit__(None, None, None)
        self.api = None
        self.domids = None

    def refresh(self, domids: "FrozenSet[int]") -> Xapi:
        """The VMs on this host, asked again when the domains holding ports are not the last ones, and
        at least every ``REASK_AFTER`` seconds: a VM xapi shows arriving here by migration, and no
        decision here has seen yet, holds no domain here and changes nothing else the daemon reads."""
        api = self._session()
        now = self.clock()
        if domids != self.domids or now - self.asked_on_clock >= REASK_AFTER:
            self.asked_on_clock = now
            asked_at = state.now()
            self.on_host = api.vms_on_host(self.host_ref)
            self.by_uuid = {str(r["uuid"]): r for r in self.on_host.values()}
            self.asked_at = asked_at
            self.domids = domids
        return api

    def settle_unresolved(self, api: Xapi, entries: "Dict[str, Entry]") -> None:
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

    def __init__(self, cfg: Config, clock: "Callable[[], float]" = time.monotonic) -> None:
        self.cfg = cfg
        self.view = XapiView(cfg, clock)
        self.boot_id = state.boot_id(cfg)
        probes.read_ceilings(cfg, None, patient=True)  # nobody waits on it: a hook's search cut by its time, redone
        self.last_read: Tuple[Any, Dict[str, Entry]] = (None, {})  # the ledger as last read, and its files' stat
        self.without_xapi = False  # the last reading could not ask xapi
        self.learner = learn.Learner(cfg)
        self.learn_failed: Optional[str] = None  # why the last look could not write, said once

    def entries(self, api: "Optional[Xapi]", dom0: probes.Dom0) -> "Dict[str, Entry]":
        """The ledger as ``status`` reads it; read again only when its files or the VMs on the host
        change, so that a ledger rebuilt from live state costs its calls once, not every reading."""
        path = self.cfg.ledger.path
        if api is None:
            loaded = ledger.load(path, self.boot_id)
            return {u: e for u, e in (loaded.entries or {}).items() if e.need != ledger.UNKNOWN_NEED}
        view = self.view
        key = (_stat(path), _stat(path + ledger.APPENDED), view.asked_at)
        if key != self.last_read[0]:
            control = next((r for r in view.on_host.values() if r.get("is_control_domain")), None)
            found = gather.Survey(dom0, view.on_host, view.asked_at or state.now(), None, view.host_ref)
            loaded = gather.load_entries(self.cfg, api, "", control, found, self.boot_id)
            self.last_read = (key, loaded.entries or {})
        return self.last_read[1]

    def read(self) -> "List[Datasource]":
        cfg = self.cfg
        dom0 = probes.read_dom0(cfg, Deadline(cfg.policy.deadline))
        held = dom0.ports.by_remote_domain
        api: Optional[Xapi] = None
        try:
            api = self.view.refresh(frozenset(held))
            entries = self.entries(api, dom0)
            self.view.settle_unresolved(api, entries)
            here = here_from_records(self.view.by_uuid, self.view.host_ref)
            asked_at = self.view.asked_at
            self.learn(api, here, held, dom0)
            if self.without_xapi:
                log("xapi answers again")
            self.without_xapi = False
        except XsguardError as exc:
            if not self.without_xapi:
                log("xapi not consulted (%s): ledger VMs charged their whole need until it answers" % exc)
            self.without_xapi = True
            self.view.failed(exc)
            api, here, asked_at = None, None, None
            entries = self.entries(None, dom0)
        _, promises = settle(entries, here, held, state.now(), cfg.ledger.ttl, "", asked_at)
        shown = status.figures(dom0, promises, cfg.policy.margin)
        sources = [Datasource(name, shown[key], what, units) for name, key, what, units in HOST_SOURCES
                   if shown[key] is not None]
        refused = state.counted(cfg, state.COUNT_REFUSED)
        sources.append(Datasource(REFUSALS[0], refused, REFUSALS[1], REFUSALS[2], DERIVE))
        for uuid, where in sorted((here or {}).items()):
            if where.state == RUNNING and where.domid is not None:
                sources.append(Datasource(HELD[0], held.get(where.domid, 0), HELD[1], HELD[2], owner=for_vm(uuid)))
        return sources

    def learn(self, api: Xapi, here: "Dict[str, Here]", held: "Dict[int, int]", dom0: probes.Dom0) -> None:
        """What the running VMs were seen to hold beyond their need, written to their records
        (``learn.Learner``), within the reading's xapi deadline. It never fails the reading: what
        it could not write is one journal line (again only if the reason changes), and the VMs not
        looked at are looked at the next reading."""
        control = next((r for r in self.view.on_host.values() if r.get("is_control_domain")), None)
        try:
            learned = self.learner.observe(api, here, held, control, dom0.backend)
        except XsguardError as exc:
            if exc.message != self.learn_failed:
                log("what VMs were seen to hold not written (%s): tried again at the next reading" % exc.message)
            self.learn_failed = exc.message
            self.view.failed(exc)
            return
        self.learn_failed = None
        for fields in learned:
            log("learned for VM %s (%s): %s" % (fields["vm_uuid"], fields["vm_name"], ", ".join(
                "%s=%s" % item for item in sorted(fields["keys"].items()))))


def _stat(path: str) -> "Optional[Tuple[int, int, int]]":
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


class RrddUnavailable(Exception):
    """xcp-rrdd did not answer, refused a call, or answered what its interface does not declare."""


class _Transport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self.socket_path = path
        self.timeout = timeout

    def make_connection(self, host: "Any") -> UnixConnection:
        return UnixConnection(self.socket_path, self.timeout)


def _cut(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def _short(value: "Any") -> str:
    return _cut(repr(value))


class Rrdd:
    """xcp-rrdd's plugin calls over its UNIX socket, each with the parameters its interface declares
    (xen-api ocaml/xapi-idl/rrd/rrd_interface.ml:433-510): named ones in one struct, a unit one as a
    nil. Whatever does not come back as the interface says is RrddUnavailable."""

    def __init__(self, path: str, timeout: float = RPC_TIMEOUT) -> None:
        self.proxy = xmlrpc.client.ServerProxy("http://localhost/", transport=_Transport(path, timeout),
                                               allow_none=True)

    def call(self, method: str, *params: "Any") -> "Any":
        try:
            answer = getattr(self.proxy, method)(*params)
        except Exception as exc:  # noqa: BLE001 - whatever xcp-rrdd's socket sends back: HTTP errors, bad XML
            raise RrddUnavailable("%s: %s" % (method, _cut(str(exc) or type(exc).__name__)))
        if not isinstance(answer, dict) or answer.get("Status") != "Success" or "Value" not in answer:
            raise RrddUnavailable("%s refused: %s" % (method, _short(answer)))
        return answer["Value"]

    def header(self) -> str:
        """``Plugin.get_header``: one unit parameter, sent as a nil (rrd_interface.ml:444-451); xcp-rrdd
        answers ``"DATASOURCES\\n"`` (rrdd_server.ml:588), protocol v1's header: a v2 file starts with
        ``DATASOURCES`` alone (rrd_protocol_v2.ml:19)."""
        header = self.call("Plugin.get_header", None)
        if not isinstance(header, str) or not header.startswith(HEADER.decode()):
            raise RrddUnavailable("Plugin.get_header answered %s: not xcp-rrdd's plugin header" % _short(header))
        return header

    def path(self, uid: str) -> str:
        path = self.call("Plugin.get_path", {"uid": uid})
        if not isinstance(path, str) or not os.path.isabs(path):
            raise RrddUnavailable("Plugin.get_path answered %s, not a path" % _short(path))
        return path

    def register(self, uid: str) -> float:
        """``Plugin.Local.register`` as protocol v2 (rrd_interface.ml:460-473): the seconds to the next
        reading, negative while xcp-rrdd is late (rrdd_server.ml:717-728)."""
        seconds = self.call("Plugin.Local.register", {"uid": uid, "info": FREQUENCY, "protocol": PROTOCOL})
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise RrddUnavailable("Plugin.Local.register answered %s, not seconds" % _short(seconds))
        return float(seconds)

    def deregister(self, uid: str) -> None:
        self.call("Plugin.Local.deregister", {"uid": uid})


def file_size(vms: int) -> int:
    """Bytes that hold every host datasource and ``vms`` VMs' (values are 8 bytes; the metadata of
    each datasource has a fixed width, a VM's uuid 36 characters), in whole pages."""
    sources = [Datasource(name, 0, what, units) for name, _, what, units in HOST_SOURCES]
    sources.append(Datasource(REFUSALS[0], 0, REFUSALS[1], REFUSALS[2], DERIVE))
    sources.extend(Datasource(HELD[0], 0, HELD[1], HELD[2], owner=for_vm("0" * 36)) for _ in range(vms))
    return -(-len(encode(0.0, sources)) // PAGE) * PAGE


class PluginFile:
    """The file xcp-rrdd maps: created whole, at its final size, then only written in place.

    xcp-rrdd maps a plugin's file once, at the size it has when registered, and again only while
    that size is 0 (rrd_file_reader.ml:21-30, rrd_reader_functor.ml:42-48); its discovery registers
    a file as soon as it is created or renamed into the directory, and ignores ``*.tmp``
    (xcp_rrdd.ml:335-374). So the file is written in full under ``<path>.tmp`` and renamed."""

    def __init__(self, path: str, size: int, fd: int, ident: "Tuple[int, int]") -> None:
        self.path = path
        self.size = size
        self.fd = fd
        self.ident = ident

    @classmethod
    def create(cls, path: str, size: int, data: bytes) -> "PluginFile":
        if len(data) > size:
            raise ValueError("%d bytes do not fit in a file of %d" % (len(data), size))
        temporary = path + ".tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)  # zeros past the metadata: the reader reads what the file declares
            os.pwrite(fd, data, 0)
            os.rename(temporary, path)
        except OSError:
            os.close(fd)
            _unlink(temporary)
            raise
        found = os.fstat(fd)
        return cls(path, size, fd, (found.st_dev, found.st_ino))

    def present(self) -> bool:
        """The file at the path is still this one, at its size."""
        try:
            found = os.stat(self.path)
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == self.ident and found.st_size == self.size

    def write(self, data: bytes) -> None:
        """In place: the values and metadata first, the header last, so that a reading in between
        takes no update rather than a torn one (rrd_protocol_v2.ml:225-245)."""
        os.pwrite(self.fd, data[HEAD_BYTES:], HEAD_BYTES)
        os.pwrite(self.fd, data[:HEAD_BYTES], 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def wait_for_reading(next_reading: float, lead: float, period: float) -> float:
    """Seconds to wait before writing: ``lead`` before the next reading; never less than ``FLOOR``
    however late xcp-rrdd says it is (a negative answer), so that a late xcp-rrdd gets one file a
    period, not a loop of them."""
    wait = next_reading - lead
    if wait < FLOOR:
        wait %= period
        if wait < FLOOR:
            wait += period
    return wait


class Daemon:
    """Make sure of the file and the registration, wait for the reading, write; until stopped.

    ``clock`` and ``sleep`` (which answers True once the daemon is to stop) are injected by tests."""

    def __init__(self, cfg: Config, stop: threading.Event, clock: "Callable[[], float]" = time.monotonic,
                 sleep: "Optional[Callable[[float], bool]]" = None, max_vms: int = MAX_VMS) -> None:
        self.cfg = cfg
        self.stop = stop
        self.clock = clock
        self.sleep = sleep or stop.wait
        self.period = cfg.rrdd.period
        self.lead = min(LEAD, self.period / 2)
        self.rrdd = Rrdd(cfg.rrdd.socket)
        self.reader = Reader(cfg, clock)
        self.path: Optional[str] = None
        self.file: Optional[PluginFile] = None
        self.vms = max_vms  # the VMs the file is sized for
        self.down: Optional[Tuple[float, str]] = None  # since when xcp-rrdd is not reached, and why

    def reading(self) -> "Tuple[bytes, int]":
        """This reading's file, and how many VMs it has datasources for."""
        sources = self.reader.read()
        return encode(time.time(), sources), sum(1 for s in sources if s.owner != HOST)

    def create(self, data: bytes, vms: int) -> None:
        """The file anew, its registration dropped first: xcp-rrdd maps the new one from scratch
        (discovery, or the registration that follows). Sized for ``self.vms`` running VMs."""
        assert self.path is not None
        self.vms = max(self.vms, vms)
        if self.file is not None:
            self.file.close()
            self.file = None
        _unlink(self.path)
        self.rrdd.deregister(UID)
        self.file = PluginFile.create(self.path, max(file_size(self.vms), len(data)), data)
        log("%s written: %d bytes, room for %d running VMs" % (self.path, self.file.size, self.vms))

    def register(self) -> float:
        """The file there and registered; the seconds to the next reading."""
        if self.path is None:
            self.rrdd.header()
            path = self.rrdd.path(UID)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.path = path
        if self.file is None or not self.file.present():
            if self.file is not None:
                log("%s was removed or replaced: written anew" % self.path)
            self.create(*self.reading())
        return self.rrdd.register(UID)

    def once(self) -> None:
        """One reading's file; what failed is logged and the reading skipped."""
        try:
            data, vms = self.reading()
        except XsguardError as exc:
            log("reading skipped: %s" % exc)
            return
        try:
            if self.file is None or not self.file.present() or len(data) > self.file.size:
                if self.file is not None and self.file.present():
                    log("%d running VMs outgrow %s (%d bytes, %d needed): a new file, for %d VMs"
                        % (vms, self.file.path, self.file.size, len(data), 2 * vms))
                    self.vms = 2 * vms
                elif self.file is not None:
                    log("%s was removed or replaced: written anew" % self.file.path)
                self.create(data, vms)
                self.rrdd.register(UID)
            else:
                self.file.write(data)
        except OSError as exc:
            log("cannot write %s: %s; it is created anew" % (self.path, exc.strerror or exc))
            if self.file is not None:
                self.file.close()
                self.file = None
        except RrddUnavailable as exc:
            self.unavailable(exc, RETRY[0])

    def unavailable(self, exc: Exception, retry: float) -> None:
        """Say once that xcp-rrdd is not reached (and again if the reason changes)."""
        why = str(exc)
        if self.down is None or self.down[1] != why:
            log("xcp-rrdd not reached (%s); trying again every %.1f to %.0f s" % (why, retry, RETRY[1]))
            self.down = (self.clock() if self.down is None else self.down[0], why)

    def run(self) -> int:
        retry = RETRY[0]
        while not self.stop.is_set():
            try:
                next_reading = self.register()
            except (RrddUnavailable, OSError) as exc:
                self.unavailable(exc, retry)
                self.path = None if isinstance(exc, RrddUnavailable) else self.path
                if self.sleep(retry):
                    break
                retry = min(retry * 2, RETRY[1])
                continue
            if self.down is not None:
                log("xcp-rrdd answers again after %.0f s: %s registered (protocol %s)"
                    % (self.clock() - self.down[0], UID, PROTOCOL))
                self.down = None
            retry = RETRY[0]
            if self.sleep(wait_for_reading(next_reading, self.lead, self.period)):
                break
            self.once()
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Deregister and remove the file, as xen-api's plugins do when they stop (reporter_local.ml:41-44)."""
        try:
            self.rrdd.deregister(UID)
        except RrddUnavailable:
            pass
        if self.file is not None:
            ours = self.file.present()
            self.file.close()
            if ours:
                _unlink(self.file.path)
        self.reader.view.drop()


def main(argv: "Optional[List[str]]" = None) -> int:
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
    log("started, pid %d, xcp-rrdd at %s" % (os.getpid(), cfg.rrdd.socket))
    return Daemon(cfg, stop).run()


if __name__ == "__main__":
    sys.exit(main())
