"""The simulated pool's wire as xapi's: JSON-RPC 1.0 and 2.0 on /jsonrpc, XML-RPC on any other path
without whitespace, system.listMethods without a session, events (event.from, inject, register and
next) and Async calls with their tasks."""

import json
import time
import urllib.request

from tests.pool import Session, failure, make_vm, wait_for


def post(url, path, body, content_type):
    request = urllib.request.Request(url.rstrip("/") + path, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read().decode("utf-8")


def jsonrpc(url, request):
    content_type, text = post(url, "/jsonrpc", json.dumps(request).encode(), "application/json")
    assert content_type == "application/json"
    return json.loads(text)


def test_jsonrpc_2_and_1_as_xapi_answers(bare_api, bare_sim):
    """2.0: result, or error {code 1, message CODE, data params}; 1.0: result and error, the error
    the ErrorDescription list; the id comes back."""
    url = bare_sim.url
    session = jsonrpc(url, {"jsonrpc": "2.0", "method": "session.login_with_password",
                            "params": ["root", "x"], "id": 7})
    assert set(session) == {"jsonrpc", "result", "id"} and session["id"] == 7
    ref = session["result"]
    assert ref.startswith("OpaqueRef:")
    assert jsonrpc(url, {"jsonrpc": "2.0", "method": "VM.get_record", "params": [ref, "OpaqueRef:x"], "id": 1}) == {
        "jsonrpc": "2.0", "error": {"code": 1, "message": "HANDLE_INVALID", "data": ["VM", "OpaqueRef:x"]}, "id": 1}
    assert jsonrpc(url, {"method": "VM.get_record", "params": [ref, "OpaqueRef:x"], "id": "a"}) == {
        "result": None, "error": ["HANDLE_INVALID", "VM", "OpaqueRef:x"], "id": "a"}
    assert jsonrpc(url, {"method": "pool.get_all", "params": [ref], "id": 2})["result"] == \
        bare_api.pool.get_all()
    assert "VM.get_all_records" in jsonrpc(url, {"jsonrpc": "2.0", "method": "system.listMethods", "id": 3})["result"]


def test_xml_without_whitespace_on_any_path_and_list_methods_bare(bare_api, bare_sim):
    """XML-RPC answers on /, /RPC2 and /xmlrpc as text/xml with no whitespace between tags;
    system.listMethods takes no parameter and answers the bare list (no Status, no Value)."""
    call = b"<?xml version='1.0'?><methodCall><methodName>system.listMethods</methodName><params></params></methodCall>"
    for path in ("/", "/RPC2", "/xmlrpc"):
        content_type, text = post(bare_sim.url, path, call, "text/xml")
        assert content_type == "text/xml"
        assert text.startswith('<?xml version="1.0"?><methodResponse><params><param><value><array><data>')
        assert ">\n" not in text and "Status" not in text
        assert "<value>Async.VM.start_on</value>" in text and "<value>event.from</value>" in text


def test_event_from_reports_adds_mods_and_dels(bare_api):
    """From the empty token everything is an add; from a later token a change is a mod and a
    destroyed record a del without snapshot; each answer carries the counts and a new token."""
    bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a", disks=0, nics=0)
    first = getattr(bare_api.event, "from")(["vm"], "", 1.0)
    assert {(e["class"], e["operation"], e["ref"]) for e in first["events"]} >= {("vm", "add", vm)}
    assert first["valid_ref_counts"]["vm"] == 2  # the VM and the host's control domain
    bare_api.VM.set_name_label(vm, "b")
    second = getattr(bare_api.event, "from")(["VM"], first["token"], 5.0)
    assert [(e["operation"], e["ref"], e["snapshot"]["name_label"])
            for e in second["events"]] == [("mod", vm, "b")]
    bare_api.VM.destroy(vm)
    third = getattr(bare_api.event, "from")(["vm"], second["token"], 5.0)
    assert [(e["operation"], e["ref"], "snapshot" in e) for e in third["events"]] == [("del", vm, False)]
    assert third["token"] > second["token"] > first["token"]
    assert failure(getattr(bare_api.event, "from"), ["vm"], "nonsense", 0.0) == \
        ["EVENT_FROM_TOKEN_PARSE_FAILURE", "nonsense"]


def test_event_from_waits_then_gives_up_empty(bare_api):
    """Nothing new: event.from waits its timeout and answers no event with a token."""
    bare_api.sim.add_host("xs-a", {})
    token = getattr(bare_api.event, "from")(["vm"], "", 0.0)["token"]
    started = time.monotonic()
    empty = getattr(bare_api.event, "from")(["message"], token, 0.3)
    assert empty["events"] == [] and time.monotonic() - started >= 0.3


def test_event_inject_and_the_legacy_interface(bare_api, bare_sim):
    """event.inject's token shows the injected row next; event.next needs event.register first
    and then returns what changed in the classes registered."""
    host = bare_api.sim.add_host("xs-a", {})
    pool = bare_api.pool.get_all()[0]
    token = bare_api.event.inject("pool", pool)
    injected = getattr(bare_api.event, "from")(["pool"], token, 1.0)["events"]
    assert [(e["class"], e["ref"]) for e in injected] == [("pool", pool)]
    assert failure(bare_api.event.inject, "pool", host)[0] == "HANDLE_INVALID"
    assert failure(bare_api.event.next)[0] == "SESSION_NOT_REGISTERED"
    bare_api.event.register(["host"])
    bare_api.host.set_name_label(host, "renamed")
    events = bare_api.event.next()
    assert [(e["class"], e["operation"], e["snapshot"]["name_label"]) for e in events] == [("host", "mod", "renamed")]


def test_async_calls_return_tasks(bare_api):
    """Async.VM.start_on returns a task that ends in success with "" (a void call); Async.VM.create's
    result is its reference as an XML-RPC value; a failed call's task carries the error; task.destroy
    removes it."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    task = bare_api.Async.VM.start_on(vm, host, False, False)
    assert task.startswith("OpaqueRef:")
    assert wait_for(lambda: bare_api.task.get_status(task) != "pending" and bare_api.task.get_record(task))[
        "status"] == "success"
    assert bare_api.task.get_result(task) == "" and bare_api.VM.get_power_state(vm) == "Running"
    again = bare_api.Async.VM.start_on(vm, host, False, False)
    record = wait_for(lambda: bare_api.task.get_status(again) != "pending" and bare_api.task.get_record(again))
    assert record["status"] == "failure" and record["error_info"][:1] == ["VM_BAD_POWER_STATE"]
    created = bare_api.Async.VM.create({"name_label": "b"})
    wait_for(lambda: bare_api.task.get_status(created) == "success")
    made = bare_api.VM.get_by_name_label("b")[0]
    assert bare_api.task.get_result(created) == "<value>%s</value>" % made
    bare_api.task.destroy(task)
    assert failure(bare_api.task.get_record, task)[0] == "HANDLE_INVALID"


def test_async_calls_need_the_role_of_the_call(bare_api, bare_sim):
    """A read-only login gets RBAC_PERMISSION_DENIED for Async.VM.start, named as the call itself."""
    bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    bare_api.sim.add_user("ro", "read-only")
    session = Session(bare_sim.url)  # closed when the test ends
    session.xenapi.login_with_password("ro", "", "1.0", "tests")
    assert failure(session.xenapi.Async.VM.start, vm, False, False)[:2] == ["RBAC_PERMISSION_DENIED", "vm.start"]


def test_jsonrpc_sends_int_fields_as_numbers(bare_api, bare_sim):
    """Over JSON-RPC xapi's int fields are JSON numbers (records, events and getters alike), while
    XML-RPC clients read them as decimal strings; an int set over JSON-RPC reads back the same way."""
    bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a", vcpus=2)
    url = bare_sim.url
    ref = jsonrpc(url, {"jsonrpc": "2.0", "method": "session.login_with_password", "params": ["root", ""],
                        "id": 1})["result"]
    record = jsonrpc(url, {"jsonrpc": "2.0", "method": "VM.get_record", "params": [ref, vm], "id": 2})["result"]
    assert (record["VCPUs_max"], record["domid"], record["name_label"]) == (2, -1, "a")
    assert jsonrpc(url, {"method": "VM.get_VCPUs_max", "params": [ref, vm], "id": 3})["result"] == 2
    assert jsonrpc(url, {"method": "VM.get_name_label", "params": [ref, vm], "id": 4})["result"] == "a"
    jsonrpc(url, {"jsonrpc": "2.0", "method": "VM.set_VCPUs_max", "params": [ref, vm, 4], "id": 5})
    assert bare_api.VM.get_VCPUs_max(vm) == "4" and bare_api.VM.get_record(vm)["domid"] == "-1"
    events = jsonrpc(url, {"jsonrpc": "2.0", "method": "event.from", "params": [ref, ["vm"], "", 1.0], "id": 6})
    mine = [e["snapshot"] for e in events["result"]["events"] if e["ref"] == vm]
    assert mine[0]["VCPUs_max"] == 4
