"""The plugin's failure branches: through host.call_plugin as xapi runs it, and ``plugin.run`` for what
xapi itself never sends."""

import pytest

from tests.pool import failure, small_host


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

    with pytest.raises(BadArgument, match="arguments must be a map of key=value"):
        plugin.run("status", None, ["vm_uuid", "x"])


def test_a_bad_config_is_the_plugin_s_error_not_a_traceback(api):
    """A host whose xsguard.conf holds a bad value: XSGUARD_BAD_CONFIG naming the key and the value,
    never a Python traceback."""
    host = small_host(api, port_limit=100, vcpus=4, **{"policy.margin": "lots"})
    details = failure(api.host.call_plugin, host, "xsguard", "status", {})
    assert details[0] == "XSGUARD_BAD_CONFIG"
    assert "margin" in details[1] and "lots" in details[1]
    assert "Traceback" not in " ".join(details)
