"""The host plugin's admit: its arguments (what the source measured, the time it has left), the time
it allows itself, and the plugin's one table of functions."""

import pytest

from xsguard import config, plugin
from xsguard.errors import BadArgument, DeadlineExceeded

VM = "2afe1b23-2c66-4a3c-9d6d-8525a47474e7"


def test_admit_takes_what_the_source_sends():
    """admit takes vm_uuid, held and time_left; anything else is named as unknown."""
    assert plugin.validate("admit", {"vm_uuid": VM.upper(), "held": "35", "time_left": "4.5"}) == {
        "vm_uuid": VM, "held": "35", "time_left": "4.5"}
    with pytest.raises(BadArgument) as err:
        plugin.validate("admit", {"vm_uuid": VM, "domid": "7"})
    assert err.value.message == "admit takes held, time_left, vm_uuid; unknown: domid"
    with pytest.raises(BadArgument):
        plugin.validate("check", {"vm_uuid": VM, "held": "3"})  # only admit takes it


@pytest.mark.parametrize("held", ["-1", "3.5", "lots", str(plugin.MAX_HELD + 1)])
def test_held_must_be_a_number_of_ports(held):
    """held: a whole number of ports up to MAX_HELD, else a clear error naming it."""
    with pytest.raises(BadArgument) as err:
        plugin._held({"held": held})
    assert err.value.details == ["held"] and "held must be a whole number of ports" in err.value.message


def test_held_defaults_to_nothing_measured():
    """An older source sends no held: the destination charges its need alone."""
    assert plugin._held({}) == 0 and plugin._held({"held": "35"}) == 35


def test_admit_answers_within_the_source_s_time():
    """With time_left, admit allows itself that less the way back (ADMIT_RESERVE), even below the
    plugin's floor; without it, the configured deadline, at least PLUGIN_FLOOR."""
    cfg = config.defaults()
    assert plugin.deadline_of("admit", {"time_left": "4"}, cfg).seconds == 4 - plugin.ADMIT_RESERVE
    assert plugin.deadline_of("admit", {}, cfg).seconds == plugin.PLUGIN_FLOOR
    assert plugin.deadline_of("status", {"time_left": "4"}, cfg).seconds == plugin.PLUGIN_FLOOR
    longer = cfg.with_values({"policy.deadline": "30"})
    assert plugin.deadline_of("check", {}, longer).seconds == 30


@pytest.mark.parametrize("left", ["0", "-2", "nan", "inf", "soon", "99999"])
def test_time_left_must_be_seconds(left):
    """time_left: seconds above 0 and at most an hour, else a clear error naming it."""
    with pytest.raises(BadArgument) as err:
        plugin.deadline_of("admit", {"time_left": left}, config.defaults())
    assert err.value.details == ["time_left"]


def test_a_source_without_time_for_the_answer_is_told_so_at_once():
    """time_left no more than the way back: the destination does not start a decision it cannot answer."""
    with pytest.raises(DeadlineExceeded) as err:
        plugin.deadline_of("admit", {"time_left": str(plugin.ADMIT_RESERVE)}, config.defaults())
    assert "the source had 1.0s left" in err.value.message


def test_one_table_names_every_function_and_its_arguments():
    """The functions the plugin exports are the table's, each with the arguments it takes."""
    assert sorted(plugin.FUNCTIONS) == ["admit", "audit", "capacity", "check", "denials", "need", "needs", "status"]
    assert {fn for fn, f in plugin.FUNCTIONS.items() if f.names_vm} == {"admit", "check", "need"}
    with pytest.raises(BadArgument) as err:
        plugin.validate("need", {"vm_uuid": "not-a-uuid"})
    assert err.value.details == ["vm_uuid"]
