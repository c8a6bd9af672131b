"""The charging rule for VMs admitted earlier."""

from typing import Dict

from xsguard.model.charging import RUNNING, STARTING, Entry, Here, here_from_records, settle

NOW = 10000.0
TTL = 600.0


def entry(uuid, need, at=NOW - 5, domid=None):
    return Entry(uuid, uuid + "-name", need, at, domid)


def test_starting_vm_is_owed_its_whole_need():
    """Admitted, scheduled here, no domain yet: owed everything."""
    kept, owed = settle({"a": entry("a", 22)}, {"a": Here(STARTING)}, {}, NOW, TTL, "x")
    assert [(o.vm_uuid, o.owed, o.state) for o in owed] == [("a", 22, "starting")]
    assert "a" in kept


def test_running_vm_is_owed_what_dom0_does_not_hold_yet():
    """Running with 4 of its 22 ports bound (PV drivers not connected yet): owed 18."""
    kept, owed = settle({"a": entry("a", 22)}, {"a": Here(RUNNING, 7)}, {7: 4}, NOW, TTL, "x")
    assert [(o.held, o.owed, o.state) for o in owed] == [(4, 18, "running")]
    assert kept["a"].domid == 7


def test_fully_connected_vm_is_owed_nothing_but_stays():
    """Once dom0 holds its whole need it is owed nothing, and stays in the ledger while it runs here."""
    kept, owed = settle({"a": entry("a", 22, domid=7)}, {"a": Here(RUNNING, 7)}, {7: 22}, NOW, TTL, "x")
    assert owed == [] and kept["a"].domid == 7


def test_a_decision_on_an_older_reading_still_charges_what_it_lacks():
    """Two hooks: the later reading (22 held) settles first; the earlier one (5 held) still owes 17."""
    later, _ = settle({"a": entry("a", 22)}, {"a": Here(RUNNING, 7)}, {7: 22}, NOW, TTL, "x")
    _, owed = settle(later, {"a": Here(RUNNING, 7)}, {7: 5}, NOW, TTL, "y")
    assert [(o.held, o.owed) for o in owed] == [(5, 17)]


def test_never_below_zero():
    """A VM holding more than predicted is owed nothing."""
    _, owed = settle({"a": entry("a", 10)}, {"a": Here(RUNNING, 7)}, {7: 12}, NOW, TTL, "x")
    assert owed == []


def test_guest_holding_more_keeps_its_peak():
    """Predicted 5, dom0 holds 35 for it (a guest that asked for 16 queues): kept at 35, not dropped."""
    kept, _ = settle({"a": entry("a", 5)}, {"a": Here(RUNNING, 7)}, {7: 35}, NOW, TTL, "x")
    assert kept["a"].peak == 35 and kept["a"].charged == 35


def test_peak_is_charged_when_the_guest_holds_less_again():
    """Seen at 35, now holding 3 (its netfront reconnecting): owed 32, never 5 - 3 = 2."""
    kept, _ = settle({"a": entry("a", 5)}, {"a": Here(RUNNING, 7)}, {7: 35}, NOW, TTL, "x")
    _, owed = settle(kept, {"a": Here(RUNNING, 7)}, {7: 3}, NOW + 1, TTL, "x")
    assert [(o.need, o.held, o.owed) for o in owed] == [(35, 3, 32)]


def test_peak_survives_a_lower_reading():
    """A reading below the peak never lowers it."""
    seen = {"a": entry("a", 5)._replace(peak=35, domid=7)}
    kept, _ = settle(seen, {"a": Here(RUNNING, 7)}, {7: 20}, NOW, TTL, "x")
    assert kept["a"].peak == 35


def test_starting_vm_with_a_peak_is_owed_its_peak():
    """A VM whose entry carries a peak of 35 over a need of 5 is owed 35 while it starts."""
    seen = {"a": entry("a", 5)._replace(peak=35)}
    _, owed = settle(seen, {"a": Here(STARTING)}, {}, NOW, TTL, "x")
    assert [o.owed for o in owed] == [35]


def test_vm_no_longer_here_leaves():
    """Not running and not starting here (stopped, refused, its hook killed, moved): gone at once."""
    kept, owed = settle({"a": entry("a", 22, domid=7), "b": entry("b", 5)}, {}, {}, NOW, TTL, "x")
    assert kept == {} and owed == []


def test_a_vm_xapi_still_shows_starting_here_is_charged_past_the_ttl():
    """A migration slower than the TTL: xapi still has the VM scheduled here, so it stays charged whole;
    the TTL applies only to what xapi was not asked about."""
    kept, promises = settle({"a": entry("a", 22, at=NOW - TTL - 1)}, {"a": Here(STARTING)}, {}, NOW, TTL, "x")
    assert list(kept) == ["a"] and [(p.vm_uuid, p.owed) for p in promises] == [("a", 22)]


def test_a_start_xapi_was_not_asked_about_expires_after_the_ttl():
    """Only some VMs asked about, and this one not among them (charged as starting): past the TTL,
    no longer charged."""
    kept, promises = settle({"a": entry("a", 22, at=NOW - TTL - 1)}, {}, {}, NOW, TTL, "x",
                            asked_at=NOW, asked={"b"})
    assert kept == {} and promises == []


def test_without_xapi_every_young_entry_is_charged_whole():
    """xapi unreachable (status only): entries younger than the TTL are charged their need."""
    entries = {"a": entry("a", 22), "b": entry("b", 9, at=NOW - TTL - 5)}
    kept, owed = settle(entries, None, {}, NOW, TTL, "x")
    assert [(o.vm_uuid, o.owed) for o in owed] == [("a", 22)]


def test_candidate_is_not_charged_twice():
    """A reboot or retried start of the same VM drops its own old entry."""
    kept, owed = settle({"a": entry("a", 22)}, {"a": Here(STARTING)}, {}, NOW, TTL, "a")
    assert kept == {} and owed == []


def test_other_domain_of_same_vm_is_dropped():
    """A different domid means a later start decided it again: the old entry goes."""
    kept, _ = settle({"a": entry("a", 22, domid=7)}, {"a": Here(RUNNING, 9)}, {9: 0}, NOW, TTL, "x")
    assert kept == {}


def test_here_from_records():
    """Running here with a domid, or scheduled here; elsewhere, halted or unscheduled: absent."""
    h, other = "OpaqueRef:h", "OpaqueRef:o"
    records: Dict[str, Dict[str, object]] = {
        "run": {"power_state": "Running", "resident_on": h, "domid": "12", "scheduled_to_be_resident_on": ""},
        "sched": {"power_state": "Halted", "resident_on": "OpaqueRef:NULL", "domid": "-1",
                  "scheduled_to_be_resident_on": h},
        "away": {"power_state": "Running", "resident_on": other, "domid": "3", "scheduled_to_be_resident_on": ""},
        "off": {"power_state": "Halted", "resident_on": "OpaqueRef:NULL", "domid": "-1",
                "scheduled_to_be_resident_on": "OpaqueRef:NULL"},
    }
    assert here_from_records(records, h) == {"run": Here(RUNNING, 12), "sched": Here(STARTING)}


def test_admitted_after_xapi_was_asked_is_starting():
    """An entry made after xapi was asked is not taken for gone: xapi could not have seen it yet."""
    kept, owed = settle({"a": entry("a", 22, at=NOW - 1)}, {}, {}, NOW, TTL, "x", asked_at=NOW - 2)
    assert [(o.vm_uuid, o.owed, o.state) for o in owed] == [("a", 22, "starting")]
    assert "a" in kept


def test_entry_as_of_when_xapi_was_asked_follows_xapi():
    """A ledger rebuilt from xapi's answer is charged by that answer: a running VM owes need minus held."""
    _, owed = settle({"a": entry("a", 22, at=NOW - 2)}, {"a": Here(RUNNING, 7)}, {7: 20}, NOW, TTL, "x",
                     asked_at=NOW - 2)
    assert [(o.held, o.owed) for o in owed] == [(20, 2)]
    kept, owed = settle({"a": entry("a", 22, at=NOW - 2)}, {}, {}, NOW, TTL, "x", asked_at=NOW - 2)
    assert kept == {} and owed == []


def test_covered_vm_leaves_once_no_decision_can_hold_an_older_reading():
    """A VM holding its whole need stays for the grace (decisions in flight), then leaves."""
    kept, _ = settle({"a": entry("a", 22, domid=7)}, {"a": Here(RUNNING, 7)}, {7: 22}, NOW, TTL, "x", grace=20)
    assert kept["a"].covered_at == NOW
    kept, owed = settle(kept, {"a": Here(RUNNING, 7)}, {7: 22}, NOW + 20, TTL, "x", grace=20)
    assert "a" in kept and owed == []
    kept, owed = settle(kept, {"a": Here(RUNNING, 7)}, {7: 22}, NOW + 21, TTL, "x", grace=20)
    assert kept == {} and owed == []


def test_an_entry_xapi_was_not_asked_about_is_starting():
    """Only the ledger's VMs are asked about: an entry made since is charged as starting."""
    kept, owed = settle({"a": entry("a", 22, at=NOW - 50)}, {}, {}, NOW, TTL, "x", asked_at=NOW - 1, asked=set())
    assert [(o.vm_uuid, o.owed, o.state) for o in owed] == [("a", 22, "starting")] and "a" in kept


def test_a_rebooting_vm_is_charged_whole_and_not_tied_to_its_old_domain():
    """xapi shows the VM Running under its old domid 7, whose domain is gone from dom0 (a reboot): it is
    charged its whole need and not tied to domid 7, so that its new domain is still charged what it lacks."""
    kept, promises = settle({"a": entry("a", 22)}, {"a": Here(RUNNING, 7)}, {9: 3}, NOW, TTL, "x")
    assert [(p.vm_uuid, p.held, p.owed) for p in promises] == [("a", 0, 22)]
    assert kept["a"].domid is None
    _, promises = settle(kept, {"a": Here(RUNNING, 12)}, {12: 4}, NOW + 1, TTL, "x")
    assert [(p.vm_uuid, p.held, p.owed) for p in promises] == [("a", 4, 18)]
