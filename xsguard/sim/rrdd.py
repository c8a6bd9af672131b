"""A stand-in xcp-rrdd per simulated host, and the systemd that starts xsguard-rrdd there.

xcp-rrdd: XML-RPC on ``<host root>/var/xapi/xcp-rrdd`` (the socket dom0's plugins reach as
``http://_var_xapi_xcp-rrdd/``): ``Plugin.get_header``, ``Plugin.get_path {uid}`` (a file
under ``<root>/dev/shm/metrics/``), ``Plugin.register {uid, frequency}`` (the seconds to the
next reading), ``Plugin.deregister {uid}``, each answered in xapi's ``Status`` envelope. Every
``interval`` seconds it reads each registered plugin's file with its own reader of protocol v2
(never xsguard's writer): a file whose header, checksums, count or metadata do not hold is
refused, recorded in ``rejected``, and its plugin's last values stay. A value whose checksum
has not changed is no update. What xapi's ``*.query_data_source`` answers: a gauge's value;
a derive's rate per second between the last two readings; an absolute's value per second; for
a name xcp-rrdd does not have, the INTERNAL_ERROR xapi lets its Datasource_missing through as.

systemd: the unit file installed in the host's root is read (``ExecStart``, ``Restart``,
``RestartSec``), its program is run inside that root with the environment the simulated
xenopsd gives hooks, and restarted as ``Restart=on-failure`` says when it exits non-zero or is
killed.
"""

import json
import os
import shlex
import socketserver
import struct
import subprocess
import threading
import time
import zlib
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

from .store import ApiError

SOCKET = os.path.join("var", "xapi", "xcp-rrdd")
METRICS = os.path.join("dev", "shm", "metrics")
UNIT = os.path.join("usr", "lib", "systemd", "system", "xsguard-rrdd.service")
HEADER = b"DATASOURCES"
FREQUENCIES = {"Five_Seconds": 5.0}
VALUE_TYPES = {"int64": ">q", "float": ">d"}
TYPES = ("absolute", "gauge", "derive")


class Rejected(Exception):
    """A plugin file that does not hold: what is wrong with it."""


class Source(NamedTuple):
    """One datasource as a plugin file declared it."""

    name: str
    owner: str  # "host" or "vm <uuid>"
    meta: Dict[str, str]
    raw: float  # the value in the file


def read_file(raw: bytes) -> Tuple[int, float, List[Source]]:
    """Decode one protocol v2 file: (data checksum, timestamp, datasources); Rejected if it does not hold."""
    if not raw.startswith(HEADER):
        raise Rejected("header is %r, not %r" % (raw[:len(HEADER)], HEADER))
    pos = len(HEADER)
    if len(raw) < pos + 12 + 8:
        raise Rejected("file ends in its header (%d bytes)" % len(raw))
    data_crc, meta_crc, count = struct.unpack_from(">III", raw, pos)
    pos += 12
    values_end = pos + 8 + 8 * count
    if len(raw) < values_end + 4:
        raise Rejected("file ends before its %d values" % count)
    if zlib.crc32(raw[pos:values_end]) & 0xFFFFFFFF != data_crc:
        raise Rejected("data checksum does not match the timestamp and values")
    (timestamp,) = struct.unpack_from(">d", raw, pos)
    (meta_len,) = struct.unpack_from(">I", raw, values_end)
    meta = raw[values_end + 4:values_end + 4 + meta_len]
    if len(meta) != meta_len:
        raise Rejected("metadata is %d bytes, its length says %d" % (len(meta), meta_len))
    if zlib.crc32(meta) & 0xFFFFFFFF != meta_crc:
        raise Rejected("metadata checksum does not match the metadata")
    try:
        doc = json.loads(meta.decode("utf-8"), object_pairs_hook=list)
    except ValueError as exc:
        raise Rejected("metadata is not JSON: %s" % exc)
    members = dict(doc) if isinstance(doc, list) else {}
    declared = members.get("datasources")
    if not isinstance(declared, list):
        raise Rejected("metadata has no datasources object")
    if len(declared) != count:
        raise Rejected("metadata declares %d datasources, the header %d" % (len(declared), count))
    sources = []
    for index, (name, fields) in enumerate(declared):
        sources.append(_source(name, fields, raw[pos + 8 + 8 * index:pos + 16 + 8 * index]))
    owned = [(s.owner, s.name) for s in sources]
    if len(set(owned)) != len(owned):
        raise Rejected("a datasource is declared twice for one owner")
    return data_crc, timestamp, sources


def _source(name: str, fields: Any, packed: bytes) -> Source:
    if not isinstance(fields, list) or not all(isinstance(v, str) for _, v in fields):
        raise Rejected("datasource %r: metadata is not an object of strings" % name)
    meta = dict(fields)
    value_type = meta.get("value_type")
    if value_type not in VALUE_TYPES:
        raise Rejected("datasource %r: value_type %r is neither int64 nor float" % (name, value_type))
    if meta.setdefault("type", "absolute") not in TYPES:
        raise Rejected("datasource %r: type %r is not one of %s" % (name, meta["type"], ", ".join(TYPES)))
    owner = meta.setdefault("owner", "host")
    kind, _, uuid = owner.partition(" ")
    if not (owner == "host" or (kind in ("vm", "sr") and len(uuid) == 36)):
        raise Rejected("datasource %r: owner %r is not host, vm <uuid> or sr <uuid>" % (name, owner))
    if meta.setdefault("default", "false") not in ("true", "false"):
        raise Rejected("datasource %r: default %r is neither true nor false" % (name, meta["default"]))
    for bound, missing in (("min", "-inf"), ("max", "inf")):
        try:
            float(meta.setdefault(bound, missing))
        except ValueError:
            raise Rejected("datasource %r: %s %r is not a number" % (name, bound, meta[bound]))
    (raw,) = struct.unpack(VALUE_TYPES[value_type], packed)
    return Source(name, owner, meta, float(raw))


class Shown(NamedTuple):
    """What xapi answers for one datasource."""

    source: Source
    value: float


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")
    disable_nagle_algorithm = False  # no TCP here

    def address_string(self) -> str:
        return "local"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer, SimpleXMLRPCDispatcher):
    daemon_threads = True

    def __init__(self, path: str, rrdd: "StandInRrdd") -> None:
        SimpleXMLRPCDispatcher.__init__(self, allow_none=True, encoding=None)
        socketserver.UnixStreamServer.__init__(self, path, _Handler)
        self.logRequests = False
        self.rrdd = rrdd

    def _dispatch(self, method: str, params: Any) -> Any:
        return self.rrdd.answer(method, list(params))


class StandInRrdd:
    """One host's xcp-rrdd."""

    def __init__(self, root: str, interval: float = 5.0) -> None:
        self.root = root
        self.interval = interval
        self.socket_path = os.path.join(root, SOCKET)
        self.lock = threading.Lock()
        self.registered: Dict[str, str] = {}  # uid -> file
        self.last_crc: Dict[str, int] = {}
        self.by_plugin: Dict[str, Dict[Tuple[str, str], Shown]] = {}  # uid -> (owner, name) -> shown
        self.previous: Dict[Tuple[str, str, str], Tuple[float, float]] = {}  # (uid, owner, name) -> (time, raw)
        self.rejected: List[Tuple[str, str]] = []  # (uid, why)
        self.readings = 0
        self.server: Optional[_Server] = None
        self.stopped = threading.Event()
        self.epoch = time.monotonic()

    def start(self) -> "StandInRrdd":
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.server = _Server(self.socket_path, self)
        self.stopped = threading.Event()
        threading.Thread(target=self.server.serve_forever, name="xcp-rrdd", daemon=True).start()
        threading.Thread(target=self._read_loop, args=(self.stopped,), name="xcp-rrdd-reader", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)

    def restart(self) -> None:
        """xcp-rrdd restarts: registrations are forgotten, the datasources it archived stay."""
        self.stop()
        with self.lock:
            self.registered.clear()
            self.last_crc.clear()
        self.start()

    # the registration calls

    def next_reading(self) -> float:
        elapsed = (time.monotonic() - self.epoch) % self.interval
        return self.interval - elapsed

    def answer(self, method: str, params: List[Any]) -> Dict[str, Any]:
        try:
            return {"Status": "Success", "Value": self._call(method, params)}
        except ApiError as exc:
            return {"Status": "Failure", "ErrorDescription": exc.description}

    def _call(self, method: str, params: List[Any]) -> Any:
        arg = params[0] if params and isinstance(params[0], dict) else {}
        if method == "Plugin.get_header":
            return HEADER.decode()
        uid = str(arg.get("uid", ""))
        if not uid or "/" in uid:
            raise ApiError("INTERNAL_ERROR", "%s: bad uid %r" % (method, uid))
        if method == "Plugin.get_path":
            return os.path.join(self.root, METRICS, uid)
        if method == "Plugin.register":
            if arg.get("frequency") not in FREQUENCIES:
                raise ApiError("INTERNAL_ERROR", "Plugin.register: unknown frequency %r" % arg.get("frequency"))
            with self.lock:
                self.registered[uid] = os.path.join(self.root, METRICS, uid)
            return self.next_reading()
        if method == "Plugin.deregister":
            with self.lock:
                self.registered.pop(uid, None)
                self.by_plugin.pop(uid, None)
            return ""
        raise ApiError("UNKNOWN_RPC", method)

    # the readings

    def _read_loop(self, stopped: threading.Event) -> None:
        while not stopped.wait(self.next_reading()):
            self.read_all()

    def read_all(self) -> None:
        with self.lock:
            for uid, path in sorted(self.registered.items()):
                self._read(uid, path)
            self.readings += 1

    def _read(self, uid: str, path: str) -> None:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError:
            return  # nothing written yet
        try:
            crc, timestamp, sources = read_file(raw)
        except Rejected as exc:
            self.rejected.append((uid, str(exc)))
            return
        if self.last_crc.get(uid) == crc:
            return  # no update
        self.last_crc[uid] = crc
        shown = {}
        for source in sources:
            key = (uid, source.owner, source.name)
            before = self.previous.get(key)
            self.previous[key] = (timestamp, source.raw)
            shown[(source.owner, source.name)] = Shown(source, _rate(source, before, timestamp))
        self.by_plugin[uid] = shown

    # what xapi answers

    def shown(self, owner: str) -> Dict[str, Shown]:
        with self.lock:
            return {name: s for plugin in self.by_plugin.values() for (o, name), s in plugin.items() if o == owner}


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
        self.started = 0
        self.stopping = threading.Event()

    def start(self) -> "Service":
        command = [os.path.join(self.root, self.unit.exec_start[0].lstrip("/"))] + self.unit.exec_start[1:]
        with open(self.journal, "ab") as journal:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=journal, stderr=journal,
                                         env=self.env, cwd="/", close_fds=True)
        self.started += 1
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


PACKAGING = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "packaging")


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
