"""The simulated pool shows what xapi shows where it hides things from a hook: guest metrics
at start, the resume's order, exec failures, roles, storage migrations, placement, evacuation."""

import os
import shutil
import threading

import pytest

from tests.pool import Session, connect, failure, make_vm, wait_for
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


def login_as(url, name):
    session = Session(url)  # closed when the test ends, its login failed or not
    session.xenapi.login_with_password(name, "any password", "1.0", "tests")
    return session.xenapi


def test_roles_deny_as_xapi_does(bare_api, bare_sim):
    """read-only reads but starts nothing; pool-operator creates messages but calls no plugin; vm-admin
    starts VMs but creates no message; each denial is RBAC_PERMISSION_DENIED [permission, roles]."""
    host = bare_api.sim.add_host("xs-a", {})
    vm = make_vm(bare_api, "a")
    uuid = bare_api.VM.get_uuid(vm)
    for name, role in (("ro", "read-only"), ("op", "pool-operator"), ("va", "vm-admin")):
        bare_api.sim.add_user(name, role)
    ro, op, va = (login_as(bare_sim.url, n) for n in ("ro", "op", "va"))
    assert vm in ro.VM.get_all_records()
    assert failure(ro.VM.start, vm, False, False) == [
        "RBAC_PERMISSION_DENIED", "vm.start", "No permission in user session. (Roles with this permission: "
        "pool-admin, pool-operator, vm-power-admin, vm-admin, vm-operator)"]
    assert failure(op.host.call_plugin, host, "xsguard", "status", {}) == [
        "RBAC_PERMISSION_DENIED", "host.call_plugin",
        "No permission in user session. (Roles with this permission: pool-admin)"]
    op.message.create("X", "3", "VM", uuid, "body")
    assert failure(va.message.create, "X", "3", "VM", uuid, "body")[:2] == ["RBAC_PERMISSION_DENIED", "message.create"]
    assert failure(va.VM.start_on, vm, host, False, False)[:2] == ["RBAC_PERMISSION_DENIED", "vm.start_on"]
    va.VM.start(vm, False, False)
    assert failure(ro.VM.hard_shutdown, vm)[:2] == ["RBAC_PERMISSION_DENIED", "vm.hard_shutdown"]
    assert failure(ro.VM.set_name_label, vm, "b")[:2] == ["RBAC_PERMISSION_DENIED", "vm.set_name_label"]
    assert failure(bare_api.host.call_plugin, host, "xsguard", "status", {})[0] == "XENAPI_MISSING_PLUGIN"


def test_logins_need_a_known_user_except_on_the_local_socket(bare_api, bare_sim):
    """A name neither root nor added fails as PAM does; an unknown role is refused; on the local
    socket any name is the local superuser (a pool-admin)."""
    import XenAPI

    from xsguard.sim.api import Api

    with pytest.raises(XenAPI.Failure) as failed:
        login_as(bare_sim.url, "nobody")
    assert failed.value.details == ["SESSION_AUTHENTICATION_FAILED", "nobody", "Authentication failure"]
    assert failure(bare_api.sim.add_user, "x", "admin") == ["INVALID_VALUE", "role", "admin"]
    local = Api(bare_sim.pool, local=True)
    session = local.dispatch("session.login_with_password", ["nobody", ""])["Value"]
    assert bare_sim.pool.sessions[session]["role"] == "pool-admin"


def test_vm_create_ignores_dynamic_read_only_fields(bare_api):
    """A record read from a running VM, fed to VM.create, makes a halted VM on no host: its resident_on,
    domid, metrics, guest metrics, devices and control-domain flag are xapi's own; it then starts."""
    host = bare_api.sim.add_host("xs-a", {})
    ref = bare_api.VM.create({
        "name_label": "copied", "power_state": "Running", "resident_on": host, "domid": "7",
        "scheduled_to_be_resident_on": host, "guest_metrics": "OpaqueRef:gone", "metrics": "OpaqueRef:gone",
        "VBDs": ["OpaqueRef:vbd"], "VIFs": ["OpaqueRef:vif"], "is_control_domain": True,
        "uuid": "11111111-2222-3333-4444-555555555555", "HVM_boot_policy": "BIOS order",
        "domain_type": "unspecified", "VCPUs_max": "2", "VCPUs_at_startup": "2",
    })
    record = bare_api.VM.get_record(ref)
    assert (record["power_state"], record["resident_on"], record["scheduled_to_be_resident_on"],
            record["domid"], record["guest_metrics"], record["VBDs"], record["VIFs"],
            record["is_control_domain"]) == ("Halted", NULL, NULL, "-1", NULL, [], [], False)
    assert record["uuid"] != "11111111-2222-3333-4444-555555555555"
    assert record["metrics"] != "OpaqueRef:gone" and bare_api.VM_metrics.get_record(record["metrics"])
    assert record["domain_type"] == "hvm"  # derived from HVM_boot_policy, as xapi's create does
    assert ref not in bare_api.host.get_resident_VMs(host)
    bare_api.VM.start(ref, False, False)
    assert bare_api.VM.get_power_state(ref) == "Running"
    assert failure(bare_api.VM.create, {"name_label": "x", "power_state": "Suspended"})[0] == "VM_BAD_POWER_STATE"


def test_placement_is_a_biased_random_host_with_room():
    """Without a host or a fitting affinity, xapi draws among the hosts with room, ranked by what
    would be left (the master's value halved), the index n * r * r (of 4: the best half the time, the
    last 1 - sqrt(3/4)); a host without room never; the same seed draws the same hosts; a fitting
    affinity host always."""
    from xsguard.sim.pool import Pool

    pool = Pool(install_xsguard=False, seed=7)
    try:
        master = pool.add_host("master", {})  # the first host is the pool's master
        hosts = [pool.add_host(n, {}) for n in ("big", "mid", "small", "full")]
        for ref, total in zip([master] + hosts, (256, 200, 150, 100, 3)):
            pool.store.get("host", ref)["memory_total"] = str(total * 1024 ** 3)
        vm_ref = pool.create_vm({"name_label": "v", "memory_static_max": str(4 * 1024 ** 3)})
        vm = pool.vm(vm_ref)
        draws = [pool._choose_host(vm_ref, vm) for _ in range(3000)]
        shares = {h: draws.count(h) / len(draws) for h in [master] + hosts}
        # left after it: master 252 GiB valued (252 - 1) / 2, big 196, mid 146, small 96: ranked big, mid,
        # master, small; index i is drawn when i/4 <= r*r < (i+1)/4
        ranked = (hosts[0], hosts[1], master, hosts[2])
        for i, ref in enumerate(ranked):
            assert abs(shares[ref] - (((i + 1) / 4) ** 0.5 - (i / 4) ** 0.5)) < 0.04, (shares, i)
        assert shares[hosts[3]] == 0
        pool.random.seed(7)
        assert [pool._choose_host(vm_ref, vm) for _ in range(50)] == draws[:50]
        vm["affinity"] = hosts[2]
        assert {pool._choose_host(vm_ref, vm) for _ in range(20)} == {hosts[2]}
    finally:
        pool.stop_timers()
        shutil.rmtree(pool.root, ignore_errors=True)


def hold_one_migration(api, host, vm_uuid):
    """A vm-pre-migrate hook on ``host`` that waits for ``go`` for that one VM only; returns the root."""
    root = api.sim.get_host_root(host)
    directory = os.path.join(root, "etc", "xapi.d", "vm-pre-migrate")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "10hold")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\ntop="%s"\nif [ "$2" = "%s" ]; then\n  touch "$top/in-hook"\n'
                     '  while [ ! -e "$top/go" ]; do sleep 0.02; done\nfi\nexit 0\n' % (root, vm_uuid))
    os.chmod(path, 0o755)
    return root


def evacuation_pool(api, sizes):
    a = api.sim.add_host("xs-a", {})
    b = api.sim.add_host("xs-b", {})
    vms = []
    for i, gib in enumerate(sizes):
        vm = make_vm(api, "vm%d" % i, memory_gib=gib, disks=0, nics=0)
        api.VM.start_on(vm, a, False, False)
        vms.append(vm)
    return a, b, vms


def test_evacuate_slides_its_window(bare_api, bare_sim):
    """With a window of 2, while the first (largest) VM's migration is held, the others go one after
    another through the other slot: lock-step batches would hold the third and fourth back."""
    a, b, vms = evacuation_pool(bare_api, (4, 3, 2, 1))
    root = hold_one_migration(bare_api, a, bare_api.VM.get_uuid(vms[0]))

    def others_moved():
        return [bare_api.VM.get_resident_on(v) for v in vms[1:]] == [b, b, b]

    seen, outcome = during_hook(bare_sim.url, root, lambda x: x.host.evacuate(a, NULL, "2"),
                                lambda: wait_for(others_moved) and bare_api.VM.get_resident_on(vms[0]))
    assert outcome == ""
    assert seen == a  # the held one was still on the source while the three others had moved
    assert [bare_api.VM.get_resident_on(v) for v in vms] == [b] * 4


def test_evacuate_ignores_vm_bad_power_state(bare_api, bare_sim):
    """A VM halted while the evacuation runs fails its migration with VM_BAD_POWER_STATE: xapi goes on."""
    a, b, vms = evacuation_pool(bare_api, (4, 1))
    root = hold_one_migration(bare_api, a, bare_api.VM.get_uuid(vms[0]))
    _, outcome = during_hook(bare_sim.url, root, lambda x: x.host.evacuate(a, NULL, "1"),
                             lambda: bare_api.VM.hard_shutdown(vms[1]))
    assert outcome == ""
    assert bare_api.VM.get_resident_on(vms[0]) == b and bare_api.VM.get_power_state(vms[1]) == "Halted"
