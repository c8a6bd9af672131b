"""XML-RPC written as xapi writes it, and fast: xapi's records are strings, booleans, numbers, lists and maps.

``xmlrpc.client.dumps`` walks every value through a generic dispatcher and indents its envelope; a
pool of 16000 VMs makes that the slowest part of ``VM.get_all_records``, and Xen Orchestra's parser
keeps whitespace. This writes what xapi writes (ocaml-rpc's Xmlrpc, mirage/ocaml-rpc
src/lib/xmlrpc.ml, add_value and add_response): no whitespace, a string as ``<value>text</value>``
with ``> < & "`` escaped and control characters other than tab, newline and return dropped.
"""

import re
from typing import Any, Dict, List

from .store import INT_FIELDS

_ESCAPES = {">": "&gt;", "<": "&lt;", "&": "&amp;", '"': "&quot;"}
_TO_ESCAPE = re.compile(r'[<>&"\x00-\x08\x0b\x0c\x0e-\x1f]')


def _encode(text: str) -> str:
    return _TO_ESCAPE.sub(lambda m: _ESCAPES.get(m.group(0), ""), text)


def _value(value: Any, out: List[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append("<value>%s</value>" % _encode(value))
    elif kind is bool:
        out.append("<value><boolean>%d</boolean></value>" % value)
    elif kind is dict:
        out.append("<value><struct>")
        for key, item in value.items():
            out.append("<member><name>%s</name>" % _encode(str(key)))
            _value(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif kind is list or kind is tuple:
        out.append("<value><array><data>")
        for item in value:
            _value(item, out)
        out.append("</data></array></value>")
    elif kind is int:
        out.append("<value><i4>%d</i4></value>" % value)
    elif kind is float:
        out.append("<value><double>%.16g</double></value>" % value)
    elif value is None:
        out.append("<value><nil/></value>")
    else:
        out.append("<value>%s</value>" % _encode(str(value)))


def value_text(value: Any) -> str:
    """One value as XML-RPC text, as xapi stores an Async task's result (Xmlrpc.to_string)."""
    out: List[str] = []
    _value(value, out)
    return "".join(out)


def response(value: Any) -> bytes:
    """A methodResponse carrying ``value``."""
    out = ['<?xml version="1.0"?><methodResponse><params><param>']
    _value(value, out)
    out.append("</param></params></methodResponse>")
    return "".join(out).encode("utf-8")


def json_response(envelope: Dict[str, Any], request_id: Any, version2: bool, method: str) -> Dict[str, Any]:
    """A JSON-RPC response as xapi writes it (ocaml-rpc's Jsonrpc.json_of_response, mirage/ocaml-rpc
    src/lib/jsonrpc.ml): 1.0 ``{result, error, id}`` with the error the ErrorDescription list; 2.0
    ``{jsonrpc, result | error, id}`` with the error ``{code: 1, message: CODE, data: [params]}``
    (xen-api ocaml/xapi/api_server.ml:31-51, error_code_lit ocaml/xapi/api_server_common.ml:195), except
    for system.listMethods."""
    ok = envelope["Status"] == "Success"
    result = _json_ints(envelope["Value"]) if ok else None
    name = method.partition(".")[2]
    if ok and name.startswith("get_") and name[4:] in INT_FIELDS and isinstance(result, str) and _INT.match(result):
        result = int(result)  # <class>.get_<an int field>
    if version2:
        reply: Dict[str, Any] = {"jsonrpc": "2.0"}
        if ok:
            reply["result"] = result
        else:
            description = envelope["ErrorDescription"]
            reply["error"] = description if method == "system.listMethods" else \
                {"code": 1, "message": description[0], "data": description[1:]}
        reply["id"] = request_id
        return reply
    if ok:
        return {"result": result, "error": None, "id": request_id}
    return {"result": None, "error": envelope["ErrorDescription"], "id": request_id}


def _json_ints(value: Any) -> Any:
    """A value with the records' int fields as JSON numbers, as xapi sends them over JSON-RPC."""
    if isinstance(value, dict):
        return {k: int(v) if k in INT_FIELDS and isinstance(v, str) and _INT.match(v) else _json_ints(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ints(v) for v in value]
    return value


_INT = re.compile(r"-?[0-9]+\Z")
