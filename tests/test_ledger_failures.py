"""The ledger's failure branches through its functions: files that do not parse, cannot be read, or
change under a charge being appended."""

import json
import os
from typing import List

import pytest

from xsguard import ledger
from xsguard.model.charging import Entry

BOOT = "b1f0c2a4-0000-4000-8000-000000000001"
E = Entry("6f1c6d3e-1b8a-4c43-9d4e-0a7b2a1c9e11", "vm", 22, 1000.0, None)
GOOD = dict(E.as_json())


def doc(*entries, **fields):
    return dict({"version": ledger.VERSION, "boot_id": BOOT, "entries": list(entries)}, **fields)


@pytest.mark.parametrize("document, why", [
    (doc(entries={"a": 1}), "entries is not a list"),
    (doc(["not", "an", "object"]), "an entry is not an object"),
    (doc({k: v for k, v in GOOD.items() if k != "need"}), "an entry has no 'need'"),
    (doc(dict(GOOD, need=2 ** 31)), "need 2147483648 is not a port count"),
    (doc(dict(GOOD, admitted_at="soon")), "admitted_at 'soon' is not a time"),
    (doc(dict(GOOD, domid=-1)), "domid -1 is not a domain id"),
    (doc(dict(GOOD, vm_name=7)), "vm_uuid, vm_name and how must be strings"),
    (doc(dict(GOOD, peak=-3)), "peak -3 is not a port count"),
    (doc(dict(GOOD, covered_at="later")), "covered_at 'later' is not a time"),
    (dict(doc(GOOD), version=1), "not a version 2 ledger (version 1)"),
])
def test_a_ledger_that_does_not_hold_is_set_aside_and_rebuilt(tmp_path, document, why):
    """Each way an entry or the file can be wrong: no entries (rebuilt from live state), a note naming
    what is wrong, the file kept aside with its content."""
    path = str(tmp_path / "ledger.json")
    with open(path, "w") as handle:
        json.dump(document, handle)
    loaded = ledger.load(path, BOOT, set_aside=True)
    assert loaded.entries is None
    assert loaded.note is not None and "corrupt (%s)" % why in loaded.note
    aside = [n for n in os.listdir(str(tmp_path)) if n != "ledger.json" and n.startswith("ledger.json")]
    assert len(aside) == 1 and not os.path.exists(path)
    with open(os.path.join(str(tmp_path), aside[0])) as handle:
        assert json.load(handle) == document


def test_a_ledger_left_in_place_when_asked_not_to_set_it_aside(tmp_path):
    """``set_aside=False`` (a read-only look): the same note, the file untouched."""
    path = str(tmp_path / "ledger.json")
    with open(path, "w") as handle:
        json.dump(doc(entries=3), handle)
    loaded = ledger.load(path, BOOT, set_aside=False)
    assert loaded.entries is None and loaded.note is not None and "is corrupt (entries is not a list)" in loaded.note
    assert os.listdir(str(tmp_path)) == ["ledger.json"]


def loop(path):
    os.symlink(os.path.basename(path), path)  # opening it fails with ELOOP


@pytest.mark.parametrize("make, why", [
    (loop, "is unreadable (Too many levels of symbolic links)"),
    (os.mkdir, "is a directory"),
])
def test_an_unreadable_ledger_is_rebuilt_with_its_appended_charges(tmp_path, make, why):
    """A ledger that cannot be read (a symlink loop) or is not a file (a directory): rebuilt, saying
    why, the appended charges kept for the rebuild."""
    path = str(tmp_path / "ledger.json")
    make(path)
    unchecked = E._replace(how="unchecked")
    ledger.append_charge(path, BOOT, unchecked)
    loaded = ledger.load(path, BOOT)
    assert loaded.entries is None
    assert loaded.note == "ledger %s %s: rebuilt from live state" % (path, why)
    assert loaded.unfolded == (unchecked,)


def test_appended_lines_that_do_not_parse_or_are_of_another_boot_are_skipped(tmp_path):
    """Garbage, a bad entry and another boot's charge among the appended lines: only this boot's good
    charge is read, and once taken under the lock a save removes them all."""
    path = str(tmp_path / "ledger.json")
    ledger.append_charge(path, BOOT, E)
    ledger.append_charge(path, "another-boot", E._replace(vm_uuid="other"))
    with open(path + ".pending", "ab") as handle:
        handle.write(b"{not json\n\xff\xfe\n" + json.dumps(dict(GOOD, boot_id=BOOT, need="x")).encode() + b"\n")
    assert ledger.read_appended(path, BOOT) == [E]
    loaded = ledger.take(path, BOOT)
    assert loaded.taken and loaded.entries == {E.vm_uuid: E}
    assert not os.path.exists(path + ".pending")
    ledger.save(path, BOOT, loaded.entries, loaded)
    assert sorted(os.listdir(str(tmp_path))) == ["ledger.json"]


def test_an_earlier_charge_does_not_replace_a_later_one():
    """Folding keeps a VM's later charge when the appended one is older."""
    later = E._replace(admitted_at=E.admitted_at + 5, need=30)
    assert ledger.fold({E.vm_uuid: later}, [E])[E.vm_uuid] == later


def race(monkeypatch, what):
    """``os.write`` of the pending line, then ``what`` done to the pending file (as a fold that saved
    the ledger and removed the file would), once."""
    write = os.write
    done: List[bool] = []

    def racing_write(fd, data):
        written = write(fd, data)
        if not done:
            done.append(True)
            what()
        return written

    monkeypatch.setattr(ledger.os, "write", racing_write)
    return done


def test_a_charge_whose_pending_file_is_removed_as_it_is_written_is_written_again(tmp_path, monkeypatch):
    """A decision folds and removes the pending file just as a charge is appended to it: the charge is
    appended again to a new file, not lost."""
    path = str(tmp_path / "ledger.json")
    done = race(monkeypatch, lambda: os.unlink(path + ".pending"))
    ledger.append_charge(path, BOOT, E)
    assert done and ledger.read_appended(path, BOOT) == [E]


def test_a_charge_whose_pending_file_is_replaced_as_it_is_written_is_written_again(tmp_path, monkeypatch):
    """The pending file removed and another made in its place (another charge) as a charge is appended:
    the charge goes into the new file too."""
    path = str(tmp_path / "ledger.json")
    other = E._replace(vm_uuid="0a0a0a0a-1b8a-4c43-9d4e-0a7b2a1c9e11")

    def replace():
        os.unlink(path + ".pending")
        with open(path + ".pending", "w") as handle:
            handle.write(json.dumps(dict(other.as_json(), boot_id=BOOT)) + "\n")

    done = race(monkeypatch, replace)
    ledger.append_charge(path, BOOT, E)
    assert done and ledger.read_appended(path, BOOT) == [other, E]


def test_sync_and_dropping_appended_charges_ask_nothing_of_missing_files(tmp_path):
    """Best effort: syncing a ledger that is not there, or saving with appended charges taken whose file
    is gone, raises nothing and saves the ledger."""
    path = str(tmp_path / "ledger.json")
    ledger.sync(path)
    ledger.save(path, BOOT, {E.vm_uuid: E}, ledger.Loaded({}, None, taken=True))
    assert ledger.load(path, BOOT).entries == {E.vm_uuid: E}
    assert sorted(os.listdir(str(tmp_path))) == ["ledger.json"]
