"""The command's tables: every name through the one escaper, whatever table shows it."""

from xsguard import tables
from xsguard.model.verdict import ascii_safe, escaped

EVIL = "web\n2026-11-26 08:00:00  forged\x1b[2J\x9b31m\u202eevil"
RAW = ("\n2026", "\x1b", "\x9b", "\u202e")


def raw_controls(text):
    return [bad for bad in RAW if bad in text]


def test_audit_place_and_evacuate_tables_escape_every_name():
    """Host and VM names with a newline, ESC, U+009B and U+202E reach no table raw: audit's head and
    cover lines, place's head and "fits on", evacuate's head, rows and unreachable hosts."""
    audit = tables.audit({"host_name": EVIL, "exact": 0, "under": 1, "over": 0, "pending": 0,
                          "vms": [{"vm_name": EVIL, "vm_uuid": "u", "predicted": 5, "held": 9, "verdict": "under",
                                   "cover": "[need] ctrl_ring = always"}]})
    place = tables.place({"vm_name": EVIL, "vm_uuid": "u", "need": 10, "fits": [EVIL],
                          "hosts": [{"host_name": EVIL, "verdict": "admit", "free": 20, "free_after": 10,
                                     "ceiling": "xen_ports"}]})
    evacuate = tables.evacuation({"host_name": EVIL, "fits": False, "refused": [EVIL], "unreachable": [EVIL],
                                  "moves": [{"vm_name": EVIL, "need": 10, "to": EVIL, "admitted": False}]})
    for text in (audit, place, evacuate):
        assert raw_controls(text) == [], text
        assert "web\\u000a2026-11-26 08:00:00  forged\\u001b[2J\\u009b31m\\u202eevil" in text


def test_one_escaper_for_tables_and_the_hook():
    """tables.clean is the escaper the hook's ASCII messages use, less the ASCII: the same rule for
    control characters; letters stay in tables and are escaped only in ASCII."""
    assert tables.clean is escaped
    assert escaped("caf\u00e9\t1") == "caf\u00e9\\u0009" + "1"
    assert ascii_safe("caf\u00e9\t1") == "caf\\u00e9\\u0009" + "1"


def test_need_table_says_one_vcpu():
    """1 vCPU, not "1 vCPUs"."""
    need = {"vm_name": "a", "vm_uuid": "u", "domain_type": "pv", "vcpus": 1, "profile": "xs8", "total": 2,
            "breakdown": []}
    assert tables.need(need).startswith("VM a (u), pv, 1 vCPU, profile xs8\n")
    assert ", 2 vCPUs, " in tables.need(dict(need, vcpus=2))


def test_evacuate_with_nothing_to_move_says_so():
    """A host with no VM to move says so instead of "the other hosts absorb them"."""
    text = tables.evacuation({"host_name": "xs-a", "fits": True, "refused": [], "moves": []})
    assert text == "evacuate xs-a: no VM runs there (or none is HA-protected): nothing to move"
