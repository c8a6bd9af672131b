"""XML-RPC responses written fast: xapi's records are strings, booleans, numbers, lists and maps.

``xmlrpc.client.dumps`` walks every value through a generic dispatcher; a pool of 16000 VMs
makes that the slowest part of ``VM.get_all_records``. This writes the same XML.
"""

from typing import Any, List
from xml.sax.saxutils import escape


def _value(value: Any, out: List[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append("<value><string>%s</string></value>" % escape(value))
    elif kind is bool:
        out.append("<value><boolean>%d</boolean></value>" % value)
    elif kind is dict:
        out.append("<value><struct>")
        for key, item in value.items():
            out.append("<member><name>%s</name>" % escape(str(key)))
            _value(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif kind is list or kind is tuple:
        out.append("<value><array><data>")
        for item in value:
            _value(item, out)
        out.append("</data></array></value>")
    elif kind is int:
        out.append("<value><int>%d</int></value>" % value)
    elif kind is float:
        out.append("<value><double>%r</double></value>" % value)
    elif value is None:
        out.append("<value><nil/></value>")
    else:
        out.append("<value><string>%s</string></value>" % escape(str(value)))


def response(value: Any) -> bytes:
    """A methodResponse carrying ``value``."""
    out = ["<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"]
    _value(value, out)
    out.append("\n</param>\n</params>\n</methodResponse>\n")
    return "".join(out).encode("utf-8")

