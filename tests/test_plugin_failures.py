"""The plugin's failure branches: through host.call_plugin as xapi runs it, and ``plugin.run`` for what
xapi itself never sends."""

from typing import Any

import pytest

from tests.pool import failure, make_vm, small_host


@pytest.mark.parametrize("limit", ["0", "10001", "-5"])
def test_denials_limit_out_of_range_is_a_bad_argument(api, limit):
    """denials limit outside 1..10000: XSGUARD_BAD_ARGUMENT naming the range and the argument."""
    host = small_host(api, port_limit=100, vcpus=4)
    details = failure(api.host.call_plugin, host, "xsguard", "denials", {"limit": limit})
    assert details == ["XSGUARD_BAD_ARGUMENT", "limit must be between 1 and 10000", "limit"]


def test_arguments_that_are_not_a_map_are_a_bad_argument():
    """Arguments other than a key=value map (xapi always sends one; a caller of ``run`` may not): a
    BadArgument, before any config or xapi is touched."""
    from xsguard import plugin
    from xsguard.errors import BadArgument

    not_a_map: Any = ["vm_uuid", "x"]  # not the map run's signature asks for, on purpose
    with pytest.raises(BadArgument, match="arguments must be a map of key=value"):
        plugin.run("status", None, not_a_map)


READ_ONLY = [("status", {}), ("need", {"vm_uuid": None}), ("check", {"vm_uuid": None}), ("denials", {}),
             ("audit", {}), ("capacity", {"vm_uuid": None}), ("needs", {})]


@pytest.mark.parametrize("fn,args", READ_ONLY, ids=[fn for fn, _ in READ_ONLY])
def test_a_bad_config_answers_with_the_kept_one_and_says_so(api, fn, args):
    """A host whose xsguard.conf gets a bad value after one that parsed: every read-only function still
    answers, with the configuration kept (its margin of 8, not the default 64), and its result says so:
    the error's code, the key and value named, and the copy it answered with."""
    import json

    host = small_host(api, port_limit=100, vcpus=4)  # a margin of 8
    vm = make_vm(api, "web", affinity=host)
    assert "config_error" not in json.loads(api.host.call_plugin(host, "xsguard", "status", {}))  # kept
    api.sim.set_xsguard_config(host, {"policy.margin": "lots"})
    call = {k: (v or api.VM.get_uuid(vm)) for k, v in args.items()}
    result = json.loads(api.host.call_plugin(host, "xsguard", fn, call))
    note = result["config_error"]
    assert note["error"] == "XSGUARD_BAD_CONFIG"
    assert "margin" in note["detail"] and "lots" in note["detail"]
    assert note["using"].endswith("config.last-good (the last configuration that parsed)")
    if fn == "status":
        assert result["margin"] == 8
