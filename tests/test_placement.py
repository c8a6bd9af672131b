"""Where else a VM fits, and a pool absorbing a host's VMs: the pure arithmetic and wording."""

from xsguard.model.placement import Room, absorb, reworded, suggestions

UUID = "2afe1b23-2c66-4a3c-9d6d-8525a47474e7"


def test_suggestions_most_room_first_at_most_three():
    """Up to three hosts, most room after first, an unknown limit last, as commands to paste."""
    rooms = [Room("xs-a", 5), Room("xs-b", None), Room("xs-c", 50), Room("xs-d", 20), Room("xs-e", 0)]
    assert suggestions("migrate", UUID, rooms, 5, 5) == [
        "- migrate it to a host with room now (most room first):",
        "    xe vm-migrate uuid=%s host=xs-c   # 50 left after" % UUID,
        "    xe vm-migrate uuid=%s host=xs-d   # 20 left after" % UUID,
        "    xe vm-migrate uuid=%s host=xs-a   # 5 left after" % UUID,
    ]


def test_suggestions_when_nothing_fits():
    """No room anywhere, no host to ask, or hosts that did not answer: each said as it is."""
    assert suggestions("start", UUID, [], 3, 3) == ["- no other host of the pool has room for it now"]
    assert suggestions("resume", UUID, [], 0, 0) == ["- no other enabled host in this pool to resume it on"]
    assert suggestions("start", UUID, [], 3, 1) == [
        "- no other host that answered in time has room for it now (2 of 3 did not answer)"]


def test_reworded_names_the_operation_and_replaces_the_generic_line():
    """The first line names the operation; the generic start line gives way to the hints, in place."""
    message = ("xsguard refused to start VM 'db' (%s) on host 'xs-b':\nit needs 10\nWhat to do:\n"
               "- start it on a host with room: xe vm-start uuid=%s on=<host>\n"
               "- or shut down another VM" % (UUID, UUID))
    assert reworded(message, "migrate", ["- HINT"]).split("\n") == [
        "xsguard refused to migrate VM 'db' (%s) to host 'xs-b':" % UUID, "it needs 10", "What to do:", "- HINT",
        "- or shut down another VM"]
    assert reworded("something else", "start", ["- HINT"]) == "something else\n- HINT"


def test_absorb_largest_first_onto_most_room_after():
    """Largest need first, each onto the host with most room after it; what fits nowhere is refused."""
    vms = [("u1", "small", {"xs-b": 5, "xs-c": 5}), ("u2", "big", {"xs-b": 30, "xs-c": 30}),
           ("u3", "mid", {"xs-b": 12, "xs-c": 14})]
    plan = absorb(vms, {"xs-b": 40, "xs-c": 20})
    assert [(m.vm_name, m.need, m.to) for m in plan.moves] == [("big", 30, "xs-b"), ("mid", 14, "xs-c"),
                                                               ("small", 5, "xs-b")]
    assert plan.fits and plan.refused == []
    tight = absorb(vms, {"xs-b": 31, "xs-c": 10})
    assert ([m.vm_name for m in tight.moves], tight.refused, tight.fits) == (["big", "small"], ["mid"], False)


def evacuee(name, memory, **needs):
    from xsguard.model.placement import Evacuee

    return Evacuee("uuid-" + name, name, memory, needs)


def test_xapi_plan_biggest_fit_decreasing():
    """As xen-api binpack.ml: largest memory first onto the host with most free memory, which goes back
    in line ahead of hosts with as much left; a VM the first host cannot hold is left out."""
    from xsguard.model.placement import xapi_plan

    vms = [evacuee("small", 1), evacuee("big", 6), evacuee("mid", 4), evacuee("huge", 20)]
    placed = xapi_plan(vms, [("xs-b", 10), ("xs-c", 8), ("xs-d", 4)])
    # after big and mid, xs-c (8 - 4) goes back in line ahead of xs-b (10 - 6) and xs-d: as much left
    assert [(v.vm_name, h) for v, h in placed] == [("huge", None), ("big", "xs-b"), ("mid", "xs-c"),
                                                   ("small", "xs-c")]
    # a host back in line with as much as another goes first: xs-c (5 - 1 = 4) ahead of xs-d (4)
    placed = xapi_plan([evacuee("one", 1), evacuee("two", 1)], [("xs-d", 4), ("xs-c", 5)])
    assert [h for _, h in placed] == ["xs-c", "xs-c"]
    assert xapi_plan([evacuee("one", 1)], []) == [(evacuee("one", 1), None)]


def test_evacuation_verdict_on_the_hosts_xapi_picks():
    """Each VM is judged on xapi's host with what the VMs before it left there; an unknown limit admits,
    a host that did not answer does not; fits only when every VM is admitted and placed."""
    from xsguard.model.placement import evacuation

    one, two, three = evacuee("one", 3, b=10), evacuee("two", 2, b=10), evacuee("three", 1, c=10)
    plan = evacuation([(one, "b"), (two, "b"), (three, "c")], {"b": 15, "c": None})
    assert [(m.vm_name, m.need, m.to, m.admitted) for m in plan.moves] == [
        ("one", 10, "b", True), ("two", 10, "b", False), ("three", 10, "c", True)]
    assert (plan.refused, plan.unplaced, plan.fits) == (["two"], [], False)
    assert evacuation([(one, "b"), (two, "b")], {"b": 20}).fits
    unanswered = evacuation([(three, "c")], {"b": 20})
    assert (unanswered.refused, unanswered.fits) == (["three"], False)
    unplaced = evacuation([(one, "b"), (two, None)], {"b": 20})
    assert (unplaced.unplaced, unplaced.refused, unplaced.fits) == (["two"], [], False)


def test_xapi_memory_by_domain_type():
    """dynamic_min for HVM and PV, static_max for PVH, plus the overhead (xapi's vm_memory)."""
    from xsguard.model.placement import xapi_memory

    record = {"memory_static_max": "8", "memory_dynamic_min": "2", "memory_overhead": "1"}
    assert xapi_memory(dict(record, domain_type="hvm")) == 3
    assert xapi_memory(dict(record, domain_type="pvh")) == 9
    assert xapi_memory({"memory_static_max": "8", "domain_type": "pv"}) == 8
