"""xcp-rrdd's plugin file, protocol v2: datasources encoded as xcp-rrdd reads them. Pure.

The file: ``DATASOURCES``; the crc32 of the encoded timestamp and values; the crc32 of the
metadata; the number of datasources; the timestamp (a big-endian double, Unix epoch); one
big-endian 64-bit value per datasource (int64 or double, as its ``value_type`` says); the
metadata's length; the metadata, JSON: ``{"datasources": {name: {description, owner,
value_type, type, default, units, min, max}, ...}}``, in the order of the values. A name may
appear once per owner: per-VM datasources share their name, as xcp-rrdd's own plugins write
them, so the metadata is written member by member rather than from a dict.
"""

import json
import math
import struct
import zlib
from typing import Dict, List, NamedTuple, Union

HEADER = b"DATASOURCES"
HOST = "host"
GAUGE = "gauge"
DERIVE = "derive"
ABSOLUTE = "absolute"
INT64 = "int64"
FLOAT = "float"

Number = Union[int, float]


class Datasource(NamedTuple):
    """One datasource's value at this reading, and what xcp-rrdd must know to keep it."""

    name: str
    value: Number
    description: str
    units: str
    type: str = GAUGE  # GAUGE, DERIVE (a counter: graphed as its rate) or ABSOLUTE
    owner: str = HOST  # HOST or "vm <uuid>"
    value_type: str = INT64  # INT64 or FLOAT
    default: bool = True  # recorded without being enabled first
    min: float = 0.0
    max: float = math.inf

    def metadata(self) -> Dict[str, str]:
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


def metadata_json(sources: List[Datasource]) -> bytes:
    """The metadata JSON, one member per datasource, in their order."""
    members = ", ".join("%s: %s" % (json.dumps(s.name), json.dumps(s.metadata(), sort_keys=True)) for s in sources)
    return ('{"datasources": {%s}}' % members).encode("utf-8")


def encode(timestamp: float, sources: List[Datasource]) -> bytes:
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
