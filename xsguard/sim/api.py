"""xapi's call surface over the Pool: method name and params in, ``Status`` envelope out."""

import inspect
import threading
import time
from typing import Any, Callable, Dict, List

from . import processes, roles, rrdd, wire
from .dom0 import Dom0
from .hosts import dom0_args
from .operations import EVACUATE_BATCH_SIZE
from .pool import Pool
from .store import DEFAULTS, INT_FIELDS, NULL, WRITABLE, ApiError

CLASSES = set(DEFAULTS)
# message.create's cls enum (xen-api ocaml/idl/datamodel.ml:8981-8994) and the
# table each names; the classes the simulator has no table for (SR, VMPP, VMSS, PVS_proxy, Certificate)
# have no object whose uuid could exist
MESSAGE_CLASSES = {"VM": "VM", "Host": "host", "SR": "SR", "Pool": "pool", "VMPP": "VMPP", "VMSS": "VMSS",
                   "PVS_proxy": "PVS_proxy", "VDI": "VDI", "Certificate": "Certificate"}


def success(value: Any) -> Dict[str, Any]:
    return {"Status": "Success", "Value": value}


def failure(description: List[str]) -> Dict[str, Any]:
    return {"Status": "Failure", "ErrorDescription": description}


class Api:
    """Dispatch one XML-RPC call as xapi would."""

    def __init__(self, pool: Pool, local: bool = False) -> None:
        self.pool = pool
        self.local = local  # the local socket: logins are the local superuser

    def dispatch(self, method: str, params: List[Any]) -> Dict[str, Any]:
        try:
            return success(self._dispatch(method, list(params)))
        except ApiError as exc:
            return failure(exc.description)
        except Exception as exc:  # noqa: BLE001 - xapi turns its own bugs into INTERNAL_ERROR
            return failure(["INTERNAL_ERROR", "%s: %s" % (type(exc).__name__, exc)])

    def _dispatch(self, method: str, params: List[Any]) -> Any:
        pool = self.pool
        if pool.call_delay and not method.startswith("sim."):
            time.sleep(pool.call_delay)
        if method in ("session.login_with_password", "session.slave_local_login_with_password"):
            _arity(method, params, 2, 4)
            user, password, version, originator = ([str(p) for p in params] + ["", ""])[:4]
            return pool.login(user, password, version, originator, local=self.local)
        if method == "system.listMethods":
            # no session, no parameter (xen-api ocaml/idl/ocaml_backend/gen_server.ml:496-...)
            return self.methods()
        if method in ("session.logout", "session.local_logout"):
            _arity(method, params, 1, 1)
            pool.logout(params[0])
            return ""
        if not params:
            raise ApiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, "1", "0")
        session = pool.check_session(params[0], method, params[1:])
        args = params[1:]
        cls, _, name = method.partition(".")
        if cls == "sim":
            return self._sim(name, args)
        if cls == "Async":
            # the call run in a task; the role is that of the call (xen-api
            # ocaml/idl/ocaml_backend/gen_server.ml:479, sync_ty_and_maybe_remove_prefix)
            roles.check(session["role"], name)
            return self._async(name, params)
        roles.check(session["role"], method)
        if cls == "event":
            return self._event(name, params[0], args)
        if method == "host.call_plugin":
            _arity(method, args, 4, 4)
            return self._call_plugin(params[0], *args)
        handler = self._special().get(method)
        if handler is not None:
            return handler(*args) if _fits(handler, args) else _mismatch(method, handler, args)
        if method == "host.migrate_receive":
            _arity(method, args, 3, 3)
            return pool.migrate_receive(args[0], args[1], params[0])
        if method == "session.get_this_host":
            return session["host"]
        if cls in CLASSES:
            return self._generic(cls, name, args, method)
        raise ApiError("MESSAGE_METHOD_UNKNOWN", method)

    def _special(self) -> Dict[str, Callable[..., Any]]:
        p = self.pool
        return {
            "VM.create": lambda rec: p.create_vm(rec),
            "VBD.create": lambda rec: p.create_device("VBD", rec),
            "VIF.create": lambda rec: p.create_device("VIF", rec),
            "VGPU.create": lambda vm, gpu_group=NULL, device="0", other_config=None, *rest:
                p.create_device("VGPU", {"VM": vm, "device": device, "other_config": other_config or {}}),
            "VDI.create": lambda rec: self._plain_create("VDI", rec),
            "network.create": lambda rec: self._plain_create("network", rec),
            "VM.destroy": _void(p.destroy_vm),
            "VM.start": _void(lambda vm, paused=False, force=False: p.start(vm)),
            "VM.start_on": _void(lambda vm, host, paused=False, force=False: p.start(vm, host)),
            "VM.hard_shutdown": _void(p.shutdown),
            "VM.clean_shutdown": _void(p.shutdown),
            "VM.hard_reboot": _void(p.reboot),
            "VM.clean_reboot": _void(p.reboot),
            "VM.pool_migrate": _void(lambda vm, host, options: p.pool_migrate(vm, host, options)),
            "VM.migrate_send": _void(lambda vm, dest, live, vdi_map, vif_map, options, vgpu_map=None:
                                     p.migrate_send(vm, dest)),
            "VM.suspend": _void(p.suspend),
            "VM.resume": _void(lambda vm, start_paused, force: p.resume(vm)),
            "VM.resume_on": _void(lambda vm, host, start_paused, force: p.resume(vm, host)),
            "host.evacuate": _void(lambda host, network=NULL, evacuate_batch_size="0":
                                   p.evacuate(host, _batch_size(evacuate_batch_size))),
            # xen-api ocaml/idl/datamodel_host.ml:321 compute_free_memory (an int64: a string on the wire),
            # what ocaml/xapi/xapi_ha_vm_failover.ml:190 host_free_memory gives the evacuation plan
            "host.compute_free_memory": lambda host: str(p.free_memory(host)),
            "host.disable": _void(lambda host: p.set_enabled(host, False)),
            "host.enable": _void(lambda host: p.set_enabled(host, True)),
            "message.create": self._message_create,
            "task.destroy": _void(self._task_destroy),
            "pool.get_master": lambda pool_ref: p.store.get("pool", pool_ref)["master"],
            "host.get_data_sources": lambda host: rrdd.data_source_records(self._host_sources(host)),
            "host.query_data_source": lambda host, name: rrdd.query(self._host_sources(host), name),
            "VM.get_data_sources": lambda vm: rrdd.data_source_records(self._vm_sources(vm)),
            "VM.query_data_source": self._vm_query,
        }

    def methods(self) -> List[str]:
        """system.listMethods: every call served (XO's client finds the classes by their get_all_records)."""
        names = set(self._special()) | {"session.login_with_password", "session.logout", "session.get_this_host",
                                        "system.listMethods", "host.call_plugin", "host.migrate_receive",
                                        "task.destroy"}
        names |= {"event.%s" % n for n in ("register", "unregister", "next", "from", "inject")}
        for cls in CLASSES:
            names |= {"%s.%s" % (cls, n) for n in ("get_all", "get_all_records", "get_all_records_where",
                                                   "get_record", "get_by_uuid")}
        names |= {"Async." + n for n in list(names) if not n.split(".", 1)[1].startswith("get_")
                  and n.split(".", 1)[0] not in ("session", "event", "system")}
        return sorted(names)

    def _async(self, method: str, params: List[Any]) -> str:
        """Async.<class>.<method>: a task now, the call in the background; the task ends with its
        result as an XML-RPC value (text; "" for a void call) or its error (xen-api
        ocaml/xapi/server_helpers.ml, do_dispatch's async branch)."""
        store = self.pool.store
        with self.pool.lock:
            task = store.create("task", {"name_label": "Async." + method, "created": _now(),
                                         "resident_on": self.pool.store.get("pool", self.pool.pool_ref)["master"]})

        def run() -> None:
            outcome = self.dispatch(method, params)
            with self.pool.lock:
                record = store.tables["task"].get(task)
                if record is None:
                    return  # destroyed meanwhile
                record.update({"progress": 1.0, "finished": _now()})
                if outcome["Status"] == "Success":
                    value = outcome["Value"]
                    record.update({"status": "success", "result": "" if value == "" else wire.value_text(value)})
                else:
                    record.update({"status": "failure", "error_info": list(outcome["ErrorDescription"])})

        threading.Thread(target=run, name="task-" + method, daemon=True).start()
        return task

    def _event(self, name: str, session: str, args: List[Any]) -> Any:
        events = self.pool.events
        if name == "from":
            _arity("event.from", args, 3, 3)
            return events.from_([str(c) for c in args[0]], str(args[1]), float(args[2]))
        if name == "inject":
            _arity("event.inject", args, 2, 2)
            return events.inject(str(args[0]), str(args[1]))
        if name == "register":
            _arity("event.register", args, 1, 1)
            events.register(session, [str(c) for c in args[0]])
            return ""
        if name == "unregister":
            _arity("event.unregister", args, 1, 1)
            events.unregister(session, [str(c) for c in args[0]])
            return ""
        if name == "next":
            _arity("event.next", args, 0, 0)
            return events.next(session)
        raise ApiError("MESSAGE_METHOD_UNKNOWN", "event." + name)

    def _host_sources(self, host_ref: str) -> Dict[str, rrdd.Shown]:
        """The host's datasources, as its xcp-rrdd last read them."""
        self.pool.host(host_ref)
        standin = self.pool.rrdds.get(host_ref)
        return standin.shown("host") if standin else {}

    def _vm_sources(self, vm_ref: str) -> Dict[str, rrdd.Shown]:
        """A VM's datasources, from the xcp-rrdd of the host it runs on (none once it is halted)."""
        with self.pool.lock:
            vm = self.pool.vm(vm_ref)
            standin = self.pool.rrdds.get(vm["resident_on"])
        return standin.shown("vm %s" % vm["uuid"]) if standin else {}

    def _vm_query(self, vm_ref: str, name: str) -> float:
        """A VM's datasource; a VM xcp-rrdd has no live datasource of is missing as a whole."""
        shown = self._vm_sources(vm_ref)
        if not shown:
            raise ApiError("INTERNAL_ERROR", "Rrd_interface.Rrdd_error(Datasource_missing(\"VM: %s\"))"
                           % self.pool.vm(vm_ref)["uuid"])
        return rrdd.query(shown, name)

    def _task_destroy(self, task: str) -> None:
        with self.pool.lock:
            self.pool.store.destroy("task", task)

    def _plain_create(self, cls: str, record: Dict[str, Any]) -> str:
        with self.pool.lock:
            return self.pool.store.create(cls, {k: v for k, v in record.items() if k != "uuid"})

    def _call_plugin(self, session: str, host_ref: str, plugin: str, fn: str, args: Dict[str, Any]) -> str:
        host = self.pool.host(host_ref)
        plain = {str(k): str(v) for k, v in args.items()}
        return processes.call_plugin(host.root, plugin, fn, session, plain, host.config_path)

    def _message_create(self, name: str, priority: Any, cls: str, obj_uuid: str, body: str) -> str:
        """message.create as xapi checks it: a class of the cls enum, a UTF-8 body, an object of
        that class with that uuid (xen-api ocaml/xapi/xapi_message.ml:419-430, check_uuid at :232-254)."""
        if cls not in MESSAGE_CLASSES:
            # the enum's unmarshaller fails before xapi_message runs; its exact text is UNVERIFIED
            raise ApiError("INTERNAL_ERROR", "Unmarshalling error: unknown cls %r" % cls)
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError("INVALID_VALUE", "UTF8 expected")
        table = MESSAGE_CLASSES[cls]
        with self.pool.lock:
            if table not in self.pool.store.by_uuid or obj_uuid not in self.pool.store.by_uuid[table]:
                raise ApiError("UUID_INVALID", cls, obj_uuid)
            return self.pool.store.create("message", {
                "name": name, "priority": str(priority), "cls": cls, "obj_uuid": obj_uuid, "body": body,
                "timestamp": _now()})

    def _generic(self, cls: str, name: str, args: List[Any], method: str) -> Any:
        pool = self.pool
        store = pool.store
        with pool.lock:
            if name == "get_all":
                _arity(method, args, 0, 0)
                return list(store.tables[cls])
            if name == "get_all_records":
                _arity(method, args, 0, 0)
                return {r: store.snapshot(cls, r) for r in store.tables[cls]}
            if name == "get_record":
                _arity(method, args, 1, 1)
                return store.snapshot(cls, args[0])
            if name == "get_by_uuid":
                _arity(method, args, 1, 1)
                return store.ref_of_uuid(cls, args[0])
            if name == "get_by_name_label":
                _arity(method, args, 1, 1)
                return store.find(cls, lambda r: r.get("name_label") == args[0])
        if name == "get_all_records_where":
            _arity(method, args, 1, 1)
            return pool.where(cls, args[0])
        with pool.lock:
            for prefix, arity in (("get_", 1), ("set_", 2), ("add_to_", 3), ("remove_from_", 2)):
                if name.startswith(prefix):
                    field = name[len(prefix):]
                    template = DEFAULTS[cls]()
                    template["uuid"] = ""
                    if field not in template:
                        break
                    if prefix != "get_" and field not in WRITABLE.get(cls, set()):
                        break
                    _arity(method, args, arity, arity)
                    record = store.get(cls, args[0])
                    if prefix == "get_":
                        return record[field]
                    if prefix == "set_":
                        # an int given as a JSON number is kept as xapi writes it to XML-RPC clients
                        record[field] = str(int(args[1])) if field in INT_FIELDS else args[1]
                    elif prefix == "add_to_":
                        if args[1] in record[field]:
                            raise ApiError("MAP_DUPLICATE_KEY", cls, field, args[0], args[1])
                        record[field][args[1]] = args[2]
                    else:
                        record[field].pop(args[1], None)
                    return ""
        raise ApiError("MESSAGE_METHOD_UNKNOWN", method)

    def _sim(self, name: str, args: List[Any]) -> Any:
        pool = self.pool
        if name == "set_seed":
            with pool.lock:
                pool.random.seed(int(args[0]))
            return ""
        if name == "add_user":
            _arity("sim.add_user", args, 2, 2)
            pool.add_user(str(args[0]), str(args[1]))
            return ""
        if name == "add_host":
            return pool.add_host(str(args[0]), dict(args[1]) if len(args) > 1 else {})
        if name == "set_dom0":
            host = pool.host(args[0])
            values = dict(args[1])
            if "stack" in values:
                pool.set_stack(args[0], str(values.pop("stack")))
                if not values:
                    return ""
            with pool.lock:
                d = host.dom0
                # keys left out keep their values; a new ABI brings its own port limit unless one is given
                merged = {"vcpus": d.vcpus, "abi": d.abi, "irq_limit": d.irq_limit,
                          "baseline_ports": d.baseline_ports, "xen_version": d.xen_version}
                if "abi" not in values:
                    merged["port_limit"] = d.port_limit
                merged.update(values)
                if len(d.ports) > d.baseline_ports:
                    raise ApiError("OPERATION_NOT_ALLOWED", "sim.set_dom0 needs a dom0 with no guests")
                host.dom0 = Dom0(host.root, **dom0_args(merged))
                host.dom0.write_boot_files()
                ctrl = pool.store.get("host", host.ref)["control_domain"]
                pool.vm(ctrl).update({"VCPUs_max": str(host.dom0.vcpus), "VCPUs_at_startup": str(host.dom0.vcpus)})
            return ""
        if name == "get_dom0":
            with pool.lock:
                return pool.host(args[0]).dom0.as_struct()
        if name == "set_guest":
            with pool.lock:
                pool.guest(pool.vm(args[0])["uuid"]).update(dict(args[1]))
            return ""
        if name == "set_xsguard_config":
            with pool.lock:
                host = pool.host(args[0])
                host.config.update({str(k): str(v) for k, v in args[1].items()})
                pool.write_xsguard_config(host)
            return ""
        if name == "get_failures":
            return pool.over_admitted()
        if name == "get_hook_log":
            with pool.lock:
                return [dict(e, exit_code=str(e["exit_code"])) for e in pool.hook_log]
        if name == "get_calls":
            with pool.lock:
                return [[o, m] for o, m, _ in pool.calls]
        if name == "get_calls_made":  # with their arguments (the session's left out), from the n-th on
            with pool.lock:
                return [[o, m, list(a)] for o, m, a in pool.calls[int(args[0]):]]
        if name == "fail_host":
            return pool.fail_host(args[0])
        if name == "install_xsguard":
            pool.install_plugins(pool.host(args[0]))
            return ""
        if name == "get_syslog":
            return list(pool.host(args[0]).syslog)
        if name == "set_call_delay":
            pool.call_delay = float(args[0])
            return ""
        if name == "get_host_root":
            return pool.host(args[0]).root
        raise ApiError("MESSAGE_METHOD_UNKNOWN", "sim." + name)


def _now() -> str:
    return time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())


def _void(fn: Callable[..., None]) -> Callable[..., str]:
    """A call whose XenAPI result is void: the empty string on the wire."""

    def call(*args: Any) -> str:
        fn(*args)
        return ""

    call.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return call


def _batch_size(value: Any) -> int:
    """xapi's evacuate_batch_size: an int64 (a string on the wire); 0 or less: the default."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ApiError("INVALID_VALUE", "evacuate_batch_size", str(value))
    return size if size > 0 else EVACUATE_BATCH_SIZE


def _arity(method: str, args: List[Any], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise ApiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, str(high), str(len(args)))


def _fits(fn: Callable[..., Any], args: List[Any]) -> bool:
    try:
        inspect.signature(fn).bind(*args)
        return True
    except TypeError:
        return False


def _mismatch(method: str, fn: Callable[..., Any], args: List[Any]) -> Any:
    expected = len([p for p in inspect.signature(fn).parameters.values()
                    if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD])
    raise ApiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, str(expected), str(len(args)))

