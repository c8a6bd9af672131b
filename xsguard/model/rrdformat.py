"""xcp-rrdd's plugin file, protocol v2: datasources encoded as xcp-rrdd reads them. Pure.

The file: ``DATASOURCES``; the crc32 of the encoded timestamp and values; the crc32 of the
metadata; the number of datasources; the timestamp (a big-endian double, Unix epoch); one
big-endian 64-bit value per datasource (int64 or double, as its ``value_type`` says); the
metadata's length; the metadata, JSON: ``{"datasources": {name: {description, owner,
value_type, type, default, units, min, max}, ...}}``, in the order of the values.

A name appears once per owner: per-VM datasources share their name and differ by owner, as
xcp-rrdd's own plugins write them (rrdp-cpu's ``cpu<n>`` per VM, ``Rrd_json.ds_to_json`` keyed by
the name alone). The metadata is therefore written member by member, not from a dict: xcp-rrdd's
parser keeps every member, in order (``Rrd_protocol_v2.parse_metadata`` maps over the object's
members, xen-api ocaml/xcp-rrdd/lib/transport/base/rrd_protocol_v2.ml:208-215; yojson's object
rule keeps duplicate names, lib/read.mll), and files each value under its owner, then its name
(``Rrdd_monitor.convert_to_owner_map``, ocaml/xcp-rrdd/bin/rrdd/rrdd_monitor.ml:109-146), so
two VMs' ``xsguard_ports_held`` never meet. The same name twice for one owner would: the last
would win.
"""

import json
import math
import struct
import zlib

from ..namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Dict, List, Union
    Number = Union[int, float]

HEADER = b"DATASOURCES"
HOST = "host"
GAUGE = "gauge"
DERIVE = "derive"
INT64 = "int64"
FLOAT = "float"



class Datasource(NamedTuple):
    """One datasource's value at this reading, and what xcp-rrdd must know to keep it."""

    name: str
    value: "Number"
    description: str
    units: str
    type: str = GAUGE  # GAUGE, or DERIVE (a counter: graphed as its rate)
    owner: str = HOST  # HOST or "vm <uuid>"
    value_type: str = INT64  # INT64 or FLOAT
    default: bool = True  # recorded without being enabled first
    min: float = 0.0
    max: float = math.inf

    def metadata(self) -> "Dict[str, str]":
        """Its metadata as xcp-rrdd's plugins write it: every field a string."""
        return {
            "description": self.description,
            "owner": self.owner,
            "value_type": self.value_type,
            "type": self.type,
            "default": "true" if self.default else "false",
            "units": self.units,
            "min": _number(self.min),
            "max": _number(self.max),
        }


def for_vm(vm_uuid: str) -> str:
    """The owner of a VM's datasource."""
    return "vm %s" % vm_uuid


def _number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


def _value(source: Datasource) -> bytes:
    if source.value_type == INT64:
        return struct.pack(">q", int(source.value))
    if source.value_type == FLOAT:
        return struct.pack(">d", float(source.value))
    raise ValueError("datasource %s: value_type %r is neither int64 nor float" % (source.name, source.value_type))


def metadata_json(sources: "List[Datasource]") -> bytes:
    """The metadata JSON, one member per datasource, in their order."""
    members = ", ".join("%s: %s" % (json.dumps(s.name), json.dumps(s.metadata(), sort_keys=True)) for s in sources)
    return ('{"datasources": {%s}}' % members).encode("utf-8")


HEAD_BYTES = len(HEADER) + 12  # the header string, both checksums and the count: written last


def encode(timestamp: float, sources: "List[Datasource]") -> bytes:
    """The whole file for one reading."""
    values = struct.pack(">d", timestamp) + b"".join(_value(s) for s in sources)
    metadata = metadata_json(sources)
    return b"".join([
        HEADER,
        struct.pack(">III", zlib.crc32(values) & 0xFFFFFFFF, zlib.crc32(metadata) & 0xFFFFFFFF, len(sources)),
        values,
        struct.pack(">I", len(metadata)),
        metadata,
    ])
