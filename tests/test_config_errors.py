"""A configuration error never switches the guard off silently: the decision is made with the last
configuration that parsed, and signalled (decision log, counter, syslog, a xapi alert) naming the VM."""

import os

import pytest

from tests.pool import decision_log, failure, make_vm, small_host, wait_for
from tests.test_hook import fill, hook_runs


@pytest.mark.parametrize("broken", [{"policy.mode": "enforse"}, {"policy.bypass": "7e1b1c55-not-a-uuid"}])
def test_a_config_error_decides_with_the_last_configuration_and_says_so(api, broken):
    """A typo in mode, or a malformed uuid in [policy] bypass (the remedy a refusal prints): a start that
    does not fit is still refused under the last configuration that parsed, and the config error is
    logged, counted, sent to syslog and raised as a xapi alert, each naming the VM."""
    host = small_host(api, port_limit=100, vcpus=4)  # 52 ports for guests
    fill(api, host, 3, vcpus=2, hvm=True, disks=1, nics=1)  # 30: 22 left; the configuration is kept
    api.sim.set_xsguard_config(host, broken)
    big = make_vm(api, "big", vcpus=8, hvm=True, firmware="uefi", disks=4, nics=2, affinity=host)  # 39
    uuid = api.VM.get_uuid(big)
    details = failure(api.VM.start, big, False, False)
    assert (details[0], details[4]) == ("XAPI_HOOK_FAILED", "2")
    assert api.VM.get_power_state(big) == "Halted"
    records = decision_log(api, host, 5)
    errors = [r for r in records if r["event"] == "config_error"]
    assert len(errors) == 1 and errors[0]["vm_uuid"] == uuid
    assert "the last configuration that parsed" in errors[0]["using"]
    assert records[-1]["event"] == "start_refused" or records[-2]["event"] == "start_refused"
    lines = wait_for(lambda: [s for s in api.sim.get_syslog(host) if "configuration error" in s])
    assert "VM %s" % uuid in lines[0]
    alerts = wait_for(lambda: [m for m in api.message.get_all_records().values()
                               if m["name"] == "XSGUARD_CONFIG_ERROR"])
    assert alerts[0]["obj_uuid"] == uuid
    counter = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "count.config_error")
    wait_for(lambda: os.path.exists(counter) and os.path.getsize(counter) == 1)
    assert hook_runs(api)[-1]["stdout"].startswith("xsguard refused to start VM 'big'")


def test_a_config_error_on_a_migration_s_destination_still_decides_it(api):
    """The destination's xsguard.conf broken after one that parsed: its ``admit`` decides with the kept
    configuration (the migration refused: it does not fit), never fails so that the source lets it
    through on error; the destination logs, counts and alerts the config error naming the VM."""
    from tests.pool import host_with_free, running

    a = host_with_free(api, "xs-a", 100)
    b = host_with_free(api, "xs-b", 9)  # a margin of 8: the VM's 10 do not fit
    vm = running(api, "db", a)
    uuid = api.VM.get_uuid(vm)
    api.host.call_plugin(b, "xsguard", "status", {})  # the destination's configuration is kept
    api.sim.set_xsguard_config(b, {"policy.margin": "lots"})
    details = failure(api.VM.pool_migrate, vm, b, {})
    assert details[:3] == ["XAPI_HOOK_FAILED", "vm-pre-migrate/50xsguard", "source"] and details[4] == "2"
    assert api.VM.get_resident_on(vm) == a
    records = decision_log(api, b, 2)
    assert [r["event"] for r in records] == ["config_error", "migrate_refused"]
    assert records[0]["vm_uuid"] == uuid and "margin" in records[0]["detail"]
    assert "the last configuration that parsed" in records[0]["using"]
    assert records[1]["need"] == 10
    alerts = wait_for(lambda: [m for m in api.message.get_all_records().values()
                               if m["name"] == "XSGUARD_CONFIG_ERROR"])
    assert [m["obj_uuid"] for m in alerts] == [uuid]
    counter = os.path.join(api.sim.get_host_root(b), "var", "lib", "xsguard", "count.config_error")
    wait_for(lambda: os.path.exists(counter) and os.path.getsize(counter) == 1)
    lines = wait_for(lambda: [s for s in api.sim.get_syslog(b) if "configuration error" in s])
    assert "the migrate of VM %s" % uuid in lines[0]
