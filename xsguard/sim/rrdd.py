"""A stand-in xcp-rrdd per simulated host, and the systemd that starts xsguard-rrdd there.

It follows xen-api's xcp-rrdd (mirror: ocaml/xcp-rrdd, ocaml/xapi-idl/rrd, and mirage/ocaml-rpc
for the XML-RPC server it is built on), each rule with its source line below, so that a plugin
that breaks a rule fails here as it would in dom0:

- XML-RPC on ``<host root>/var/xapi/xcp-rrdd``; every method takes the parameters its interface
  declares, named ones in one struct: ``Plugin.get_header`` a nil, ``Plugin.get_path {uid}``,
  ``Plugin.Local.register {uid, info, protocol}``, ``Plugin.Local.deregister {uid}``,
  ``Plugin.Local.next_reading {uid}``, and the legacy ``Plugin.register {uid, frequency}``,
  ``Plugin.deregister {uid}``, ``Plugin.next_reading {uid}``. A call without them is answered
  ``Rrdd_internal_error``; an unknown method, HTTP 401 "Go away".
- ``Plugin.get_header`` answers ``"DATASOURCES\\n"`` (protocol v1's header); the legacy
  ``Plugin.register`` registers protocol V1, so a v2 file registered that way fails every reading.
- Registering opens the file at once (a plugin must create it first) and maps it at its size: the
  mapping is taken again only while it is empty, so it never follows a size change, nor a rename
  over the file. The first registration of a uid wins.
- Discovery: a file created in, or renamed into, ``<root>/dev/shm/metrics/`` is registered as V2,
  one removed or renamed away is deregistered; at start every file there is registered.
- Every ``interval`` seconds it reads each registered plugin with its protocol's reader (its own,
  never xsguard's writer). A failed read, and a file whose data checksum did not change, doubles
  the plugin's skip count (2, 4 ... 256 readings); a good read resets it.

``outcomes`` keeps what each reading did with each plugin (``ok``, ``skipped`` or the reader's
exception), ``rejected`` the failed reads with why. What xapi's ``*.query_data_source`` answers:
a gauge's value; a derive's rate per second between the last two readings; an absolute's value
per second; for a name xcp-rrdd does not have, the INTERNAL_ERROR xapi lets its
Datasource_missing through as.

systemd: the unit file installed in the host's root is read (``ExecStart``, ``Restart``,
``RestartSec``), its program is run inside that root with the environment the simulated
xenopsd gives hooks, and restarted as ``Restart=on-failure`` says when it exits non-zero or is
killed.
"""

import hashlib
import http.server
import json
import os
import shlex
import shutil
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
import xmlrpc.client
import zlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import inotify, shipped
from .store import ApiError

SOCKET = os.path.join("var", "xapi", "xcp-rrdd")
METRICS = os.path.join("dev", "shm", "metrics")  # rrdd_server.ml:586 base_path "/dev/shm/metrics/"
UNIT = os.path.join("usr", "lib", "systemd", "system", "xsguard-rrdd.service")
HEADER_V2 = b"DATASOURCES"  # rrd_protocol_v2.ml:19
HEADER_V1 = b"DATASOURCES\n"  # rrd_protocol_v1.ml:17
GET_HEADER = "DATASOURCES\n"  # rrdd_server.ml:588, what Plugin.get_header answers
FREQUENCIES = ("Five_Seconds",)  # rrd_interface.ml:66, Rrd.sampling_frequency (xapi-rrd rrd.ml:43)
PROTOCOLS = ("V1", "V2")  # rrd_interface.ml:46-49
VALUE_TYPES = {"int64": ">q", "float": ">d"}  # rrd_protocol_v2.ml:163-170
TYPES = ("absolute", "gauge", "derive")  # rrd_rpc.ml:34-43
SKIP_MAX = 256  # rrdd_server.ml:658, about 21 minutes of 5-second readings


class ReadFailed(Exception):
    """A plugin file xcp-rrdd's reader does not take: the OCaml exception's name, and why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__("%s: %s" % (kind, why))
        self.kind = kind
        self.why = why




class Source(NamedTuple):
    """One datasource as a plugin file declared it."""

    name: str
    owner: str  # "host", "vm <uuid>" or "sr <uuid>"
    meta: Dict[str, str]
    raw: float  # the value in the file


class Payload(NamedTuple):
    timestamp: float
    sources: List[Source]


def _meta_source(name: str, fields: Any) -> Tuple[Source, str]:
    """A datasource from its metadata (value 0) and its value_type, as
    ``Rrd_protocol_v2.uninitialised_ds_of_rpc`` reads it (rrd_protocol_v2.ml:174-206)."""
    if not isinstance(fields, list) or not all(isinstance(v, str) for _, v in fields):
        raise ReadFailed("Invalid_payload", "datasource %r: metadata is not an object of strings" % name)
    meta = dict(fields)
    value_type = meta.get("value_type")
    if value_type not in VALUE_TYPES:  # rrd_protocol_v2.ml:163-170, 183-184
        raise ReadFailed("Invalid_payload", "datasource %r: value_type %r is neither int64 nor float"
                         % (name, value_type))
    if meta.setdefault("type", "absolute").lower() not in TYPES:  # rrd_rpc.ml:34-43
        raise ReadFailed("Invalid_payload", "datasource %r: type %r is not one of %s"
                         % (name, meta["type"], ", ".join(TYPES)))
    meta["type"] = meta["type"].lower()
    owner = meta.setdefault("owner", "host")
    parts = owner.lower().split(" ")  # rrd_rpc.ml:46-55
    if not (parts == ["host"] or (len(parts) == 2 and parts[0] in ("vm", "sr"))):
        raise ReadFailed("Invalid_payload", "datasource %r: owner %r is not host, vm <uuid> or sr <uuid>"
                         % (name, owner))
    if meta.setdefault("default", "false") not in ("true", "false"):  # bool_of_string
        raise ReadFailed("Invalid_payload", "datasource %r: default %r is neither true nor false"
                         % (name, meta["default"]))
    for bound, missing in (("min", "-infinity"), ("max", "infinity")):
        try:
            float(meta.setdefault(bound, missing))  # float_of_string
        except ValueError:
            raise ReadFailed("Invalid_payload", "datasource %r: %s %r is not a number" % (name, bound, meta[bound]))
    return Source(name, owner.lower(), meta, 0.0), value_type


def _document(text: bytes) -> Dict[str, Any]:
    """The top object's members; each object inside kept as its list of members, every one in
    order: yojson keeps a name given twice (ocaml-community/yojson lib/read.mll, the object rule)
    and xcp-rrdd maps over them all (rrd_protocol_v2.ml:208-215)."""
    try:
        doc = json.loads(text.decode("utf-8"), object_pairs_hook=list)
    except ValueError as exc:
        raise ReadFailed("Invalid_payload", "metadata is not JSON: %s" % exc)
    if not isinstance(doc, list):  # Rrd_rpc.dict_of_rpc, rrd_rpc.ml:16-17
        raise ReadFailed("Invalid_payload", "metadata is not a JSON object")
    return dict(doc)


def _datasources(doc: Dict[str, Any]) -> List[Tuple[str, Any]]:
    members = doc.get("datasources")
    if not isinstance(members, list):
        raise ReadFailed("Invalid_payload", "no datasources object")
    return members


class ReaderV2:
    """``Rrd_protocol_v2.make_payload_reader`` (rrd_protocol_v2.ml:220-275): one per registration,
    remembering the last checksums and the datasources the metadata declared."""

    def __init__(self) -> None:
        self.last_data_crc = 0
        self.last_meta_crc = 0
        self.cached: List[Tuple[Source, str]] = []

    def read(self, raw: bytes) -> Payload:
        if raw[:len(HEADER_V2)] != HEADER_V2:
            raise ReadFailed("Invalid_header_string", "header is %r, not %r" % (raw[:len(HEADER_V2)], HEADER_V2))
        pos = len(HEADER_V2)
        if len(raw) < pos + 20:
            raise ReadFailed("Read_error", "the mapping ends in the header (%d bytes)" % len(raw))
        data_crc, meta_crc, count = struct.unpack_from(">III", raw, pos)
        if data_crc == self.last_data_crc:
            raise ReadFailed("No_update", "the data checksum did not change since the last reading")
        values_at = pos + 12
        values_end = values_at + 8 + 8 * count
        if len(raw) < values_end:  # Cstruct's bounds check
            raise ReadFailed("Read_error", "%d values do not fit in the %d bytes mapped" % (count, len(raw)))
        if zlib.crc32(raw[values_at:values_end]) & 0xFFFFFFFF != data_crc:
            raise ReadFailed("Invalid_checksum", "data checksum does not match the timestamp and values")
        self.last_data_crc = data_crc
        (timestamp,) = struct.unpack_from(">d", raw, values_at)
        if meta_crc != self.last_meta_crc:
            if len(raw) < values_end + 4:
                raise ReadFailed("Read_error", "the metadata length is past the %d bytes mapped" % len(raw))
            (meta_len,) = struct.unpack_from(">I", raw, values_end)
            meta = raw[values_end + 4:values_end + 4 + meta_len]
            if len(meta) != meta_len:
                raise ReadFailed("Read_error", "metadata of %d bytes does not fit in the %d bytes mapped"
                                 % (meta_len, len(raw)))
            if zlib.crc32(meta) & 0xFFFFFFFF != meta_crc:
                raise ReadFailed("Invalid_checksum", "metadata checksum does not match the metadata")
            self.last_meta_crc = meta_crc
            doc = _document(meta.rstrip(b"\0"))  # NULs trimmed (rrd_protocol_v2.ml:264-271)
            self.cached = [_meta_source(name, fields) for name, fields in _datasources(doc)]
        sources = []
        for index, (source, value_type) in enumerate(self.cached):
            at = values_at + 8 + 8 * index
            if len(raw) < at + 8:
                raise ReadFailed("Read_error", "value %d is past the %d bytes mapped" % (index, len(raw)))
            (value,) = struct.unpack_from(VALUE_TYPES[value_type], raw, at)
            sources.append(source._replace(raw=float(value)))
        return Payload(timestamp, sources)


class ReaderV1:
    """``Rrd_protocol_v1.make_payload_reader`` (rrd_protocol_v1.ml:104-125): the header with its
    newline, 8 hex digits of length, the payload's MD5, then JSON with the values in it."""

    def __init__(self) -> None:
        self.last_checksum = ""

    def read(self, raw: bytes) -> Payload:
        if raw[:len(HEADER_V1)] != HEADER_V1:
            raise ReadFailed("Invalid_header_string", "read as protocol V1: header is %r, not %r"
                             % (raw[:len(HEADER_V1)], HEADER_V1))
        at = len(HEADER_V1)
        try:
            length = int(raw[at:at + 8].decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            raise ReadFailed("Invalid_length", "read as protocol V1: %r is not a hex length" % raw[at:at + 8])
        checksum = raw[at + 9:at + 41].decode("ascii", "replace")
        payload = raw[at + 42:at + 42 + length]
        if hashlib.md5(payload).hexdigest() != checksum:
            raise ReadFailed("Invalid_checksum", "read as protocol V1: the MD5 does not match the payload")
        if checksum == self.last_checksum:
            raise ReadFailed("No_update", "the checksum did not change since the last reading")
        self.last_checksum = checksum
        doc = _document(payload)
        sources = []
        for name, fields in _datasources(doc):
            values = dict(fields) if isinstance(fields, list) else {}
            value = values.pop("value", None)
            values.setdefault("value_type", "float")  # rrd_protocol_v1.ml:65-66
            source, _ = _meta_source(name, [(k, str(v)) for k, v in values.items()])
            try:
                sources.append(source._replace(raw=float(value)))
            except (TypeError, ValueError):
                raise ReadFailed("Invalid_payload", "datasource %r: value %r is not a number" % (name, value))
        timestamp = doc.get("timestamp")
        if not isinstance(timestamp, (int, float)):  # Rpc.float_of_rpc (rrd_protocol_v1.ml:97)
            raise ReadFailed("Invalid_payload", "timestamp %r is not a number" % (timestamp,))
        return Payload(float(timestamp), sources)


def read_file(raw: bytes) -> Payload:
    """One protocol v2 file read by a fresh reader; ReadFailed if xcp-rrdd would not take it."""
    return ReaderV2().read(raw)


class Mapping:
    """The file as ``Rrd_file_reader.File.init`` maps it (rrd_file_reader.ml:21-30): opened when the
    plugin registers, at the size it has then; opened again only while that size is 0
    (rrd_reader_functor.ml:42-48). Held by descriptor, as a mapping holds the file it mapped, so a
    file renamed over it or grown is never seen."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size

    def contents(self) -> bytes:
        if self.size <= 0:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise ReadFailed("Read_error", "the file cannot be mapped again: %s" % exc.strerror)
            os.close(self.fd)
            self.fd, self.size = fd, os.fstat(fd).st_size
        if os.fstat(self.fd).st_size < self.size:  # past the end of a shorter file a mapping faults
            raise ReadFailed("Read_error", "the file shrank below the %d bytes mapped (xcp-rrdd takes SIGBUS)"
                             % self.size)
        return os.pread(self.fd, self.size, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Plugin:
    """One registered plugin (rrdd_server.ml:642-646): its reader and its skip counts."""

    def __init__(self, uid: str, protocol: str, mapping: Mapping) -> None:
        self.uid = uid
        self.protocol = protocol
        self.mapping = mapping
        self.reader = ReaderV2() if protocol == "V2" else ReaderV1()
        self.skip_init = 1
        self.skip = 0


class Shown(NamedTuple):
    """What xapi answers for one datasource."""

    source: Source
    value: float


class InternalError(Exception):
    """Answered as ``Rrdd_internal_error``: ocaml-rpc's error matcher turns every exception a method
    raises into it (rrd_interface.ml:115-123, ocaml-rpc src/lib/idl.ml:49-57, 752-759)."""


class UnknownMethod(Exception):
    """Raised outside the method (ocaml-rpc idl.ml:644-648): xcp-rrdd answers HTTP 401 "Go away"
    (xcp_rrdd.ml:37-49)."""


def _unit(params: List[Any]) -> None:
    """The one unnamed unit parameter (rrd_interface.ml:157, 444-451): a nil, as dom0's client sends
    it (ocaml/xapi-idl/lib_test/test_data/rrd/requests/Plugin.get_header.request.0:1)."""
    if not params:  # ocaml-rpc idl.ml:141-142
        raise InternalError('Idl.MarshalError("Incorrect number of arguments")')
    if params[0] is not None:  # ocaml-rpc rpc.ml:310-312
        raise InternalError('Idl.MarshalError("Expected unit, got \'%s\'")' % (params[0],))


def _named(params: List[Any], *names: str) -> Dict[str, Any]:
    """Named parameters, all in the first one, a struct (ocaml-rpc idl.ml:121-140; the request samples
    in ocaml/xapi-idl/lib_test/test_data/rrd/requests/)."""
    if not params or not isinstance(params[0], dict):
        raise InternalError('Idl.MarshalError("Marshalling error: Expecting dict as first argument when named'
                            ' parameters exist")')
    for name in names:
        if name not in params[0]:
            raise InternalError("Idl.MarshalError(\"Expecting named argument '%s'\")" % name)
    found = dict(params[0])
    if not isinstance(found["uid"], str):
        raise InternalError('Idl.MarshalError("uid: expected a string")')
    return found


def _variant(value: Any, allowed: Tuple[str, ...], what: str) -> str:
    if value not in allowed:  # ocaml-rpc rpcmarshal.ml, Variant: a known constructor's name
        raise InternalError('Idl.MarshalError("%s: %r is not one of %s")' % (what, value, ", ".join(allowed)))
    return str(value)


class _Handler(http.server.BaseHTTPRequestHandler):
    """XML-RPC over HTTP, answered as ``xmlrpc_handler`` does (xcp_rrdd.ml:37-49)."""

    server: "_Server"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=True)
            answer = self.server.rrdd.answer(str(method), list(params))
        except (UnknownMethod, ValueError, xmlrpc.client.Error) as exc:
            self._send(401, ("Go away: %s" % exc).encode())
            return
        self._send(200, xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=True).encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/xml" if code == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "local"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, rrdd: "StandInRrdd") -> None:
        socketserver.UnixStreamServer.__init__(self, path, _Handler)
        self.rrdd = rrdd


class StandInRrdd:
    """One host's xcp-rrdd. ``clock`` is its monotonic time; with ``read_by_itself`` false nothing
    reads but ``read_all`` (a test drives the readings)."""

    def __init__(self, root: str, interval: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 read_by_itself: bool = True) -> None:
        self.root = root
        self.interval = interval
        self.clock = clock
        self.read_by_itself = read_by_itself
        self.socket_path = _bindable(os.path.join(root, SOCKET))
        self.metrics = os.path.join(root, METRICS)
        self.lock = threading.RLock()
        self.registered: Dict[str, Plugin] = {}  # by uid
        self.by_plugin: Dict[str, Dict[Tuple[str, str], Shown]] = {}  # uid -> (owner, name) -> shown
        self.previous: Dict[Tuple[str, str, str], Tuple[float, float]] = {}  # (uid, owner, name) -> (time, raw)
        self.rejected: List[Tuple[str, str]] = []  # (uid, why)
        self.outcomes: Dict[str, List[str]] = {}  # uid -> what each reading did: ok, skipped, or the exception
        self.discovery_errors: List[str] = []
        self.readings = 0
        self.late = 0.0  # seconds the reading loop has missed its cycle by (next_reading answers negative)
        self.calls: List[str] = []  # the methods called, in order
        self.discovering = True  # False: the discovery thread is in its pause after an error
        self.server: Optional[_Server] = None
        self.watch: Optional[inotify.Inotify] = None
        self.stopped = threading.Event()
        self.epoch = clock()

    def start(self) -> "StandInRrdd":
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        _link(os.path.join(self.root, SOCKET), self.socket_path)
        os.makedirs(self.metrics, exist_ok=True)  # dom0's /dev/shm/metrics exists before xcp-rrdd starts
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.stopped = threading.Event()
        self.watch = inotify.Inotify(self.metrics, inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_MOVED_TO
                                     | inotify.IN_MOVED_FROM)
        self._scan()
        self.server = _Server(self.socket_path, self)
        threading.Thread(target=self.server.serve_forever, name="xcp-rrdd", daemon=True).start()
        threading.Thread(target=self._discover_loop, args=(self.stopped,), name="xcp-rrdd-discovery",
                         daemon=True).start()
        if self.read_by_itself:
            threading.Thread(target=self._read_loop, args=(self.stopped,), name="xcp-rrdd-reader", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        _unbind(self.socket_path, self.root)
        with self.lock:
            if self.watch is not None:
                self.watch.close()
                self.watch = None
            for plugin in self.registered.values():
                plugin.mapping.close()
            self.registered.clear()

    def restart(self) -> None:
        """xcp-rrdd restarts: registrations are forgotten, the datasources it archived stay, and
        discovery registers every file in the plugin directory again."""
        self.stop()
        self.start()

    # discovery (xcp_rrdd.ml:352-444)

    @staticmethod
    def _valid(name: str) -> bool:
        return not name.endswith(".tmp") and not name.startswith("tap-")  # xcp_rrdd.ml:357-361

    def _scan(self) -> None:
        """At start every file in the directory is registered (xcp_rrdd.ml:425-431)."""
        with self.lock:
            for name in sorted(os.listdir(self.metrics)):
                if self._valid(name):
                    self._discovered(name)

    def discover(self) -> None:
        """Act on the directory's events queued so far, in order (xcp_rrdd.ml:398-419): what the real
        daemon's discovery thread has done by the time a call or a reading comes."""
        with self.lock:
            if self.watch is None:
                return
            for mask, name in self.watch.read():
                if not self.discovering or not self._valid(name):
                    continue
                if mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO):
                    self._discovered(name)
                elif mask & (inotify.IN_DELETE | inotify.IN_MOVED_FROM):
                    self._deregister(name)  # xcp_rrdd.ml:380-382

    def pause_discovery(self) -> None:
        """Discovery fails: the real thread logs the error and waits 10 s; what the directory does
        meanwhile is lost, since a new watch is made (xcp_rrdd.ml:436-441)."""
        with self.lock:
            self.discovery_errors.append("paused")
            self.discovering = False

    def resume_discovery(self) -> None:
        """Discovery starts again: it scans the directory, then watches it (xcp_rrdd.ml:437)."""
        with self.lock:
            self.discover()
            self.discovering = True
            self._scan()

    def _discovered(self, name: str) -> None:
        try:
            self._register(name, "V2")  # xcp_rrdd.ml:370-374: Five_Seconds, V2
        except InternalError as exc:  # the real thread logs it, waits 10 s and scans again (xcp_rrdd.ml:436-441)
            self.discovery_errors.append("%s: %s" % (name, exc))

    def _discover_loop(self, stopped: threading.Event) -> None:
        """The discovery thread: what the directory did, taken every 0.1 s (and before every call and
        reading). It never blocks on the inotify descriptor, which ``stop`` closes under the lock."""
        while not stopped.wait(0.1):
            self.discover()

    # the plugin interface (rrd_interface.ml:433-510, rrdd_server.ml:584-807)

    def next_reading(self, uid: Optional[str] = None) -> float:
        """Seconds to the next reading; negative while the reading loop is late (rrdd_server.ml:717-728);
        -1 for a uid that is not registered."""
        if uid is not None and uid not in self.registered:
            return -1.0
        if self.late > 0:
            return -self.late
        elapsed = (self.clock() - self.epoch) % self.interval
        return self.interval - elapsed

    def answer(self, method: str, params: List[Any]) -> Dict[str, Any]:
        """One call's answer in the ``Status`` envelope; UnknownMethod for a method xcp-rrdd has not."""
        self.discover()
        self.calls.append(method)
        handler = self._methods().get(method)
        if handler is None:
            raise UnknownMethod("Idl.UnknownMethod(\"%s\")" % method)
        try:
            with self.lock:
                value = handler(params)
        except InternalError as exc:
            return {"Status": "Failure", "ErrorDescription": ["Rrdd_internal_error", str(exc)]}
        return {"Status": "Success", "Value": value}

    def _methods(self) -> Dict[str, Callable[[List[Any]], Any]]:
        return {
            "Plugin.get_header": self._get_header,
            "Plugin.get_path": lambda p: os.path.join(self.metrics, _named(p, "uid")["uid"]),  # rrdd_server.ml:595-597
            "Plugin.Local.register": self._local_register,  # rrd_interface.ml:460-473
            "Plugin.Local.deregister": lambda p: self._deregister(_named(p, "uid")["uid"]),  # rrd_interface.ml:475-478
            "Plugin.Local.next_reading": lambda p: self.next_reading(_named(p, "uid")["uid"]),
            "Plugin.register": self._legacy_register,  # rrd_interface.ml:488-499
            "Plugin.deregister": lambda p: self._deregister(_named(p, "uid")["uid"]),  # rrdd_server.ml:803
            "Plugin.next_reading": lambda p: self.next_reading(_named(p, "uid")["uid"]),  # rrdd_server.ml:798
        }

    @staticmethod
    def _get_header(params: List[Any]) -> str:
        _unit(params)  # rrd_interface.ml:444-451
        return GET_HEADER  # rrdd_server.ml:588, 592

    def _local_register(self, params: List[Any]) -> float:
        found = _named(params, "uid", "info", "protocol")
        _variant(found["info"], FREQUENCIES, "info")
        self._register(found["uid"], _variant(found["protocol"], PROTOCOLS, "protocol"))
        return self.next_reading(found["uid"])  # rrdd_server.ml:747

    def _legacy_register(self, params: List[Any]) -> float:
        found = _named(params, "uid", "frequency")
        _variant(found["frequency"], FREQUENCIES, "frequency")
        self._register(found["uid"], "V1")  # rrdd_server.ml:800-801: the legacy call registers V1
        return self.next_reading(found["uid"])

    def _register(self, uid: str, protocol: str) -> None:
        """The first registration wins (rrdd_server.ml:738-746); a new one maps the file now."""
        if uid in self.registered:
            return
        path = os.path.join(self.metrics, uid)
        try:
            mapping = Mapping(path)
        except OSError as exc:  # Unix.openfile fails: the method raises (rrd_file_reader.ml:22)
            raise InternalError('Unix.Unix_error(Unix.%s, "open", "%s")'
                                % (_errno_name(exc.errno), path))
        self.registered[uid] = Plugin(uid, protocol, mapping)

    def _deregister(self, uid: str) -> None:
        plugin = self.registered.pop(uid, None)  # rrdd_server.ml:751-759
        if plugin is not None:
            plugin.mapping.close()

    # the readings (rrdd_server.ml:656-712, 762-780)

    def _read_loop(self, stopped: threading.Event) -> None:
        while not stopped.wait(max(self.next_reading(), 0.0)):
            self.read_all()

    def read_all(self) -> None:
        self.discover()
        with self.lock:
            plugins = sorted(self.registered.items())
            for _, plugin in plugins:  # every skip count goes down, then the plugins at 0 are read
                if plugin.skip > 0:
                    plugin.skip -= 1
            for uid, plugin in plugins:
                if plugin.skip > 0:
                    self.outcomes.setdefault(uid, []).append("skipped")
                    continue
                self._read(uid, plugin)
            for uid in [u for u in self.by_plugin if u not in self.registered]:
                del self.by_plugin[uid]  # a plugin gone: its datasources have no value any more
            self.readings += 1

    def _read(self, uid: str, plugin: Plugin) -> None:
        try:
            payload = plugin.reader.read(plugin.mapping.contents())
        except ReadFailed as exc:  # any exception, No_update included, doubles the skip count
            plugin.skip_init = min(plugin.skip_init * 2, SKIP_MAX)
            plugin.skip = plugin.skip_init
            self.outcomes.setdefault(uid, []).append(exc.kind)
            if exc.kind != "No_update":
                self.rejected.append((uid, exc.why))
            return
        if plugin.skip_init > 1:
            plugin.skip_init, plugin.skip = 1, 0
        self.outcomes.setdefault(uid, []).append("ok")
        shown = {}
        for source in payload.sources:
            key = (uid, source.owner, source.name)
            before = self.previous.get(key)
            self.previous[key] = (payload.timestamp, source.raw)
            shown[(source.owner, source.name)] = Shown(source, _rate(source, before, payload.timestamp))
        self.by_plugin[uid] = shown

    # what xapi answers

    def shown(self, owner: str) -> Dict[str, Shown]:
        with self.lock:
            return {name: s for plugin in self.by_plugin.values() for (o, name), s in plugin.items() if o == owner}


MAX_SOCKET_PATH = 107  # bytes in sockaddr_un's sun_path, its NUL apart (Linux)


def _bindable(path: str) -> str:
    """``path``, or if too long to bind (a deep host root) one as short as the system allows, in a
    directory under /tmp made for it; ``path`` then links to it."""
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    return os.path.join(tempfile.mkdtemp(prefix="xcp-rrdd-", dir="/tmp"), "xcp-rrdd")


def _link(path: str, target: str) -> None:
    if path != target and not os.path.islink(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)


def _unbind(path: str, root: str) -> None:
    """Remove a socket, and the directory made for it if it is not under the host's root."""
    if os.path.exists(path):
        os.unlink(path)
    if not path.startswith(os.path.join(root, "")):
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _errno_name(number: Optional[int]) -> str:
    import errno

    return errno.errorcode.get(number or 0, "EUNKNOWN")


def _rate(source: Source, before: Optional[Tuple[float, float]], timestamp: float) -> float:
    kind = source.meta["type"]
    if kind == "gauge":
        return source.raw
    if before is None or timestamp <= before[0]:
        return 0.0
    elapsed = timestamp - before[0]
    if kind == "derive":
        return max(source.raw - before[1], 0.0) / elapsed
    return source.raw / elapsed


def data_source_records(shown: Dict[str, Shown]) -> List[Dict[str, Any]]:
    """``*.get_data_sources``: one record per datasource, as xapi's data_source class."""
    return [{"name_label": name, "name_description": s.source.meta.get("description", ""), "enabled": True,
             "standard": s.source.meta["default"] == "true", "units": s.source.meta.get("units", ""),
             "min": float(s.source.meta["min"]), "max": float(s.source.meta["max"]), "value": s.value}
            for name, s in sorted(shown.items())]


def query(shown: Dict[str, Shown], name: str) -> float:
    """``*.query_data_source``: the datasource's latest value."""
    if name not in shown:
        raise ApiError("INTERNAL_ERROR", "Rrd_interface.Rrdd_error(Datasource_missing(\"%s\"))" % name)
    return shown[name].value


# systemd


class Unit(NamedTuple):
    """What a service unit says about running its program."""

    exec_start: List[str]
    restart: str
    restart_sec: float


def read_unit(path: str) -> Unit:
    values: Dict[str, str] = {}
    section = ""
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif "=" in line and section == "Service" and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    if "ExecStart" not in values:
        raise ValueError("%s has no ExecStart" % path)
    return Unit(shlex.split(values["ExecStart"]), values.get("Restart", "no"), float(values.get("RestartSec", "0.1")))


class Service:
    """A unit's program run in a host's root, restarted as its unit says."""

    def __init__(self, root: str, env: Dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.unit = read_unit(os.path.join(root, UNIT))
        self.journal = os.path.join(root, "var", "log", "xsguard-rrdd.journal")
        self.proc: "Optional[subprocess.Popen[bytes]]" = None
        self.starts = 0  # how many times systemd started the unit
        self.stopping = threading.Event()

    def start(self) -> "Service":
        command = [os.path.join(self.root, self.unit.exec_start[0].lstrip("/"))] + self.unit.exec_start[1:]
        with open(self.journal, "ab") as journal:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=journal, stderr=journal,
                                         env=self.env, cwd="/", close_fds=True)
        self.starts += 1
        threading.Thread(target=self._watch, args=(self.proc,), name="systemd", daemon=True).start()
        return self

    def _watch(self, proc: "subprocess.Popen[bytes]") -> None:
        code = proc.wait()
        if self.stopping.is_set() or self.unit.restart not in ("on-failure", "always"):
            return
        if code == 0 and self.unit.restart == "on-failure":
            return
        if not self.stopping.wait(self.unit.restart_sec):
            self.start()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def stop(self) -> None:
        """``systemctl stop``: SIGTERM, then SIGKILL after 5 s."""
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


PACKAGING = shipped.find("_packaging", "packaging", "xsguard-rrdd.service")  # xsguard-rrdd and its unit


def install_unit(root: str, interpreter: str) -> None:
    """Install xsguard-rrdd and its unit from packaging/ into a host's root, as the RPM does."""
    script = os.path.join(root, "usr", "bin", "xsguard-rrdd")
    os.makedirs(os.path.dirname(script), exist_ok=True)
    with open(os.path.join(PACKAGING, "xsguard-rrdd")) as handle:
        lines = handle.read().splitlines(True)
    lines[0] = "#!%s\n" % interpreter
    with open(script, "w") as handle:
        handle.writelines(lines)
    os.chmod(script, 0o755)
    unit = os.path.join(root, UNIT)
    os.makedirs(os.path.dirname(unit), exist_ok=True)
    with open(os.path.join(PACKAGING, "xsguard-rrdd.service")) as handle:
        text = handle.read()
    with open(unit, "w") as handle:
        handle.write(text)
