"""The charging rule for VMs admitted earlier."""

from xsguard.promises import Alive, Entry, settle

NOW = 10000.0
TTL = 600.0


def entry(uuid, need, at=NOW - 5, domid=None):
    return Entry(uuid, uuid + "-name", need, at, domid)


def test_starting_vm_is_owed_its_whole_need():
    """Admitted, no domain yet, within the TTL: owed everything."""
    kept, owed = settle({"a": entry("a", 22)}, {}, {}, NOW, TTL, "x")
    assert [(o.vm_uuid, o.owed, o.state) for o in owed] == [("a", 22, "starting")]
    assert "a" in kept


def test_running_vm_is_owed_what_dom0_does_not_hold_yet():
    """Running with 4 of its 22 ports bound (PV drivers not connected yet): owed 18."""
    kept, owed = settle({"a": entry("a", 22)}, {"a": Alive(7)}, {7: 4}, NOW, TTL, "x")
    assert [(o.held, o.owed, o.state) for o in owed] == [(4, 18, "running")]
    assert kept["a"].domid == 7


def test_fully_connected_vm_leaves_the_ledger():
    """Once dom0 holds its whole need, the live count covers it."""
    kept, owed = settle({"a": entry("a", 22, domid=7)}, {"a": Alive(7)}, {7: 22}, NOW, TTL, "x")
    assert kept == {} and owed == []


def test_never_below_zero():
    """A VM holding more than predicted is owed nothing."""
    _, owed = settle({"a": entry("a", 10)}, {"a": Alive(7)}, {7: 12}, NOW, TTL, "x")
    assert owed == []


def test_stopped_vm_leaves():
    """Seen running before, not alive now: gone."""
    kept, owed = settle({"a": entry("a", 22, domid=7)}, {}, {}, NOW, TTL, "x")
    assert kept == {} and owed == []


def test_start_that_never_made_a_domain_expires():
    """No domain after the TTL (refused by a later hook, failed): gone."""
    kept, _ = settle({"a": entry("a", 22, at=NOW - TTL - 1)}, {}, {}, NOW, TTL, "x")
    assert kept == {}


def test_candidate_is_not_charged_twice():
    """A reboot or retried start of the same VM drops its own old entry."""
    kept, owed = settle({"a": entry("a", 22)}, {}, {}, NOW, TTL, "a")
    assert kept == {} and owed == []


def test_other_domain_of_same_vm_is_dropped():
    """A different domid means a later start decided it again: the old entry goes."""
    kept, _ = settle({"a": entry("a", 22, domid=7)}, {"a": Alive(9)}, {9: 0}, NOW, TTL, "x")
    assert kept == {}
