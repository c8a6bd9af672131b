"""The simulated pool shows what xapi shows where it hides things from a hook: guest metrics
at start, the resume's order, exec failures, roles, storage migrations, placement, evacuation."""

import os
import shutil
import threading

from tests.pool import connect, failure, make_vm, wait_for
from tests.test_sim import install_hook

NULL = "OpaqueRef:NULL"


def hold_hook(api, host, hook="vm-pre-start", code=0):
    """A hook that says it runs (``in-hook``) and waits for ``go``; returns (root, go)."""
    root = api.sim.get_host_root(host)
    directory = os.path.join(root, "etc", "xapi.d", hook)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "10hold")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\ntop="%s"\ntouch "$top/in-hook"\n'
                     'while [ ! -e "$top/go" ]; do sleep 0.02; done\nrm -f "$top/in-hook" "$top/go"\nexit %d\n'
                     % (root, code))
    os.chmod(path, 0o755)
    return root


def during_hook(url, root, call, look):
    """Run ``call`` in a thread, ``look()`` while the held hook runs, then let it go; (look's value, outcome)."""
    outcome = []

    def run():
        try:
            outcome.append(call(connect(url).xenapi))
        except Exception as exc:  # noqa: BLE001 - the test reads it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: os.path.exists(os.path.join(root, "in-hook")))
        seen = look()
    finally:
        open(os.path.join(root, "go"), "w").close()
        thread.join(20)
    return seen, outcome[0]


def test_start_deletes_guest_metrics_before_the_hook(bare_api, bare_sim):
    """VM.start deletes the guest metrics a previous run left (their os_version with them): the hook
    sees OpaqueRef:NULL and the old record is gone; the guest agent reports them again once up."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "win")
    bare_api.sim.set_guest(vm, {"os_name": "Microsoft Windows Server 2019 Standard"})
    bare_api.VM.start(vm, False, False)
    old = wait_for(lambda: bare_api.VM.get_guest_metrics(vm) != NULL and bare_api.VM.get_guest_metrics(vm))
    wait_for(lambda: bare_api.VM_guest_metrics.get_os_version(old).get("name"))
    bare_api.VM.hard_shutdown(vm)
    assert bare_api.VM.get_guest_metrics(vm) == old  # shutdown keeps them: only a start deletes them
    root = hold_hook(bare_api, host)
    seen, _ = during_hook(bare_sim.url, root, lambda x: x.VM.start(vm, False, False),
                          lambda: (bare_api.VM.get_guest_metrics(vm), bare_api.VM_guest_metrics.get_all()))
    assert seen == (NULL, [])
    new = wait_for(lambda: bare_api.VM.get_guest_metrics(vm) != NULL and bare_api.VM.get_guest_metrics(vm))
    assert new != old
    assert wait_for(lambda: bare_api.VM_guest_metrics.get_os_version(new).get("name")) == \
        "Microsoft Windows Server 2019 Standard"


def test_a_refused_start_leaves_no_guest_metrics(bare_api):
    """The deletion comes before xenopsd: a start the hook refuses still leaves the VM without them."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    bare_api.VM.start(vm, False, False)
    wait_for(lambda: bare_api.VM.get_guest_metrics(vm) != NULL)
    bare_api.VM.hard_shutdown(vm)
    install_hook(bare_api, host, "50no", "#!/bin/sh\nexit 2\n")
    assert failure(bare_api.VM.start, vm, False, False)[0] == "XAPI_HOOK_FAILED"
    assert bare_api.VM.get_guest_metrics(vm) == NULL


def test_resume_binds_nothing_before_the_hook(bare_api, bare_sim):
    """A resume's new domain holds no dom0 channel while vm-pre-resume runs; afterwards it holds
    what the suspended domain held (xenstore and console included)."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a", disks=1, nics=1)
    bare_api.VM.start(vm, False, False)
    wait_for(lambda: bare_api.VM.get_guest_metrics(vm) != NULL)
    held = bare_api.sim.get_dom0(host)["ports_used"]
    bare_api.VM.suspend(vm)
    empty = bare_api.sim.get_dom0(host)["ports_used"]
    root = hold_hook(bare_api, host, "vm-pre-resume")
    seen, outcome = during_hook(bare_sim.url, root, lambda x: x.VM.resume(vm, False, False),
                                lambda: bare_api.sim.get_dom0(host)["ports_used"])
    assert outcome == ""
    assert seen == empty
    assert bare_api.sim.get_dom0(host)["ports_used"] == held


def test_non_executable_hook_fails_with_exit_126(bare_api):
    """An entry xenopsd cannot execute fails the start as exit 126 would: XAPI_HOOK_FAILED, VM halted."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    root = install_hook(bare_api, host, "50plain", "#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(root, "etc", "xapi.d", "vm-pre-start", "50plain"), 0o644)
    assert failure(bare_api.VM.start, vm, False, False) == \
        ["XAPI_HOOK_FAILED", "vm-pre-start/50plain", "none", "", "126"]
    assert bare_api.VM.get_power_state(vm) == "Halted"


def test_where_strings_have_no_escapes(bare_api):
    """A backslash is an ordinary character in a where string, a quote ends it, and ``<>`` or an
    upper-case keyword does not lex, as in xapi's lexer."""
    bare_api.sim.add_host("xs-a", {})
    plain = make_vm(bare_api, "a\\")
    where = bare_api.VM.get_all_records_where
    assert list(where('field "name__label" = "a\\"')) == [plain]
    assert failure(where, 'field "name__label" = "a\\"" or true')[0] == "INVALID_VALUE"
    assert failure(where, 'field "name__label" <> "a"')[0] == "INVALID_VALUE"
    assert failure(where, 'field "name__label" = "a" AND true')[0] == "INVALID_VALUE"


def test_message_create_checks_class_uuid_and_body(bare_api):
    """message.create refuses an unknown class, a uuid no object of that class has, and a body
    that is not UTF-8; a VM's alert is created."""
    bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    uuid = bare_api.VM.get_uuid(vm)
    create = bare_api.message.create
    assert failure(create, "X", "3", "Vm", uuid, "body")[0] == "INTERNAL_ERROR"
    assert failure(create, "X", "3", "Host", uuid, "body") == ["UUID_INVALID", "Host", uuid]
    assert failure(create, "X", "3", "VM", "00000000-0000-0000-0000-000000000000", "body")[0] == "UUID_INVALID"
    message = create("X", "3", "VM", uuid, "body")
    assert bare_api.message.get_record(message)["obj_uuid"] == uuid


def test_message_body_must_be_utf8():
    """A body that does not encode as UTF-8 (a lone surrogate) is INVALID_VALUE "UTF8 expected"."""
    from xsguard.sim.api import Api
    from xsguard.sim.pool import Pool

    pool = Pool(install_xsguard=False)
    try:
        api = Api(pool)
        session = api.dispatch("session.login_with_password", ["root", ""])["Value"]
        host = api.dispatch("sim.add_host", [session, "xs-a", {}])["Value"]
        uuid = pool.store.get("host", host)["uuid"]
        reply = api.dispatch("message.create", [session, "X", "3", "Host", uuid, "bad \udcff"])
        assert reply == {"Status": "Failure", "ErrorDescription": ["INVALID_VALUE", "UTF8 expected"]}
    finally:
        pool.stop_timers()
        shutil.rmtree(pool.root, ignore_errors=True)


def storage_pool(api):
    """Two hosts, a network, and a VM running on the first."""
    a = api.sim.add_host("xs-a", {})
    b = api.sim.add_host("xs-b", {})
    network = api.network.create({"name_label": "net0"})
    vm = make_vm(api, "app")
    api.VM.start_on(vm, a, False, False)
    return a, b, network, vm


def test_storage_migration_inside_the_pool_reserves_then_runs_pre_migrate(bare_api, bare_sim):
    """migrate_send to host.migrate_receive's answer for a host of this pool: while the source's
    vm-pre-migrate runs, the destination is reserved (scheduled_to_be_resident_on); then the VM runs there."""
    a, b, network, vm = storage_pool(bare_api)
    dest = bare_api.host.migrate_receive(b, network, {})
    assert dest["host"] == b and set(dest) == {"SM", "host", "xenops", "session_id", "master"}
    root = hold_hook(bare_api, a, "vm-pre-migrate")
    seen, outcome = during_hook(bare_sim.url, root, lambda x: x.VM.migrate_send(vm, dest, True, {}, {}, {}),
                                lambda: (bare_api.VM.get_scheduled_to_be_resident_on(vm),
                                         bare_api.VM.get_resident_on(vm)))
    assert outcome == ""
    assert seen == (b, a)
    assert bare_api.VM.get_resident_on(vm) == b
    assert bare_api.VM.get_scheduled_to_be_resident_on(vm) == NULL
    assert [r["reason"] for r in bare_api.sim.get_hook_log()] == ["source"]


def test_storage_migration_refused_is_an_internal_error_carrying_hook_failed(bare_api):
    """A vm-pre-migrate refusal on the storage-migration path reaches the caller as INTERNAL_ERROR with
    xenopsd's printed Hook_failed, not XAPI_HOOK_FAILED; the VM keeps running on the source."""
    a, b, network, vm = storage_pool(bare_api)
    root = bare_api.sim.get_host_root(a)
    os.makedirs(os.path.join(root, "etc", "xapi.d", "vm-pre-migrate"))
    path = os.path.join(root, "etc", "xapi.d", "vm-pre-migrate", "50no")
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\necho 'no room on xs-b'\nexit 2\n")
    os.chmod(path, 0o755)
    details = failure(bare_api.VM.migrate_send, vm, bare_api.host.migrate_receive(b, network, {}), True, {}, {}, {})
    assert details == ["INTERNAL_ERROR", "Xenops_interface.Xenopsd_error([S(Hook_failed);"
                       "[S(vm-pre-migrate/50no);S(source);S(no room on xs-b\n);S(2)]])"]
    assert bare_api.VM.get_resident_on(vm) == a and bare_api.VM.get_power_state(vm) == "Running"
    assert bare_api.VM.get_scheduled_to_be_resident_on(vm) == NULL
    # the same refusal through VM.pool_migrate is xapi's own error
    assert failure(bare_api.VM.pool_migrate, vm, b, {})[:2] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50no"]


def test_migrate_receive_checks_its_host_and_network(bare_api):
    """host.migrate_receive needs a host and a network of this pool."""
    a, _, network, _ = storage_pool(bare_api)
    assert failure(bare_api.host.migrate_receive, "OpaqueRef:nope", network, {})[:2] == ["HANDLE_INVALID", "host"]
    assert failure(bare_api.host.migrate_receive, a, "OpaqueRef:nope", {})[:2] == ["HANDLE_INVALID", "network"]
