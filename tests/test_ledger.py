"""The ledger file: atomic writes, corrupt files set aside, a lock the kernel releases."""

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List

import pytest

from xsguard import ledger
from xsguard.deadline import Deadline
from xsguard.errors import DeadlineExceeded
from xsguard.model.charging import Entry

E = Entry("6f1c6d3e-1b8a-4c43-9d4e-0a7b2a1c9e11", "vm", 22, 1000.0, None)
BOOT = "b1f0c2a4-0000-4000-8000-000000000001"


def read(path: str, boot_id: str = BOOT) -> Dict[str, Entry]:
    """The ledger's entries as ``load`` reads them, which must be there (None: to be rebuilt)."""
    loaded = ledger.load(path, boot_id)
    assert loaded.entries is not None, loaded.note
    return loaded.entries


def test_round_trip(tmp_path):
    """What is saved loads back."""
    path = str(tmp_path / "ledger.json")
    ledger.save(path, BOOT, {E.vm_uuid: E})
    assert ledger.load(path, BOOT) == ({E.vm_uuid: E}, None, 0, ())
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_peak_round_trip(tmp_path):
    """An entry's peak (a guest seen holding more than its need) is saved and loads back."""
    path = str(tmp_path / "ledger.json")
    greedy = E._replace(need=5, peak=35, domid=7)
    ledger.save(path, BOOT, {greedy.vm_uuid: greedy})
    assert read(path)[greedy.vm_uuid].peak == 35


def test_missing_is_empty(tmp_path):
    """No ledger yet: empty, no note."""
    assert ledger.load(str(tmp_path / "none.json"), BOOT).entries == {}


def test_earlier_boot_is_rebuilt_quietly(tmp_path):
    """A ledger of an earlier boot speaks of domains that are gone: rebuilt, not reported corrupt."""
    path = str(tmp_path / "ledger.json")
    ledger.save(path, "another-boot", {E.vm_uuid: E})
    loaded = ledger.load(path, BOOT)
    assert (loaded.entries, loaded.note) == (None, None)


CORRUPT = [b"", b"{", b"\xff\xfe", b'{"version": 9, "entries": []}', b"[]",
           b'{"version": 2, "boot_id": "%s", "entries": [{"need": 3}]}' % BOOT.encode(),
           b'{"version": 2, "boot_id": "%s", "entries": [{"vm_uuid": "u", "need": Infinity, "admitted_at": 1}]}'
           % BOOT.encode(),
           b'{"version": 2, "boot_id": "%s", "entries": [{"vm_uuid": "u", "need": 3, "admitted_at": 1e999}]}'
           % BOOT.encode(),
           b'{"version": 2, "boot_id": "%s", "entries": [{"vm_uuid": "u", "need": 1e999, "admitted_at": 1}]}'
           % BOOT.encode(),
           b'{"version": 2, "boot_id": "%s", "entries": [{"vm_uuid": "u", "need": 3, "admitted_at": 1, "peak": -4}]}'
           % BOOT.encode(),
           b"[" * 100000 + b"]" * 100000]


@pytest.mark.parametrize("content", CORRUPT, ids=range(len(CORRUPT)))
def test_corrupt_is_set_aside(tmp_path, content):
    """A ledger that does not parse (Infinity, 1e999 and deep nesting included) is kept aside and rebuilt."""
    path = str(tmp_path / "ledger.json")
    with open(path, "wb") as handle:
        handle.write(content)
    loaded = ledger.take(path, BOOT)
    assert loaded.entries is None
    assert loaded.note is not None and "kept as" in loaded.note and "rebuilt from live state" in loaded.note
    aside = [n for n in os.listdir(str(tmp_path)) if n.startswith("ledger.json.corrupt-")]
    assert len(aside) == 1
    with open(str(tmp_path / aside[0]), "rb") as handle:
        assert handle.read() == content


def test_read_only_load_leaves_corrupt_file(tmp_path):
    """``status`` and ``check`` read without moving anything, and also rebuild."""
    path = str(tmp_path / "ledger.json")
    with open(path, "w") as handle:
        handle.write("{")
    loaded = ledger.load(path, BOOT, set_aside=False)
    assert loaded.entries is None and loaded.note is not None and "rebuilt from live state" in loaded.note
    assert os.path.exists(path)


def test_appended_charges_are_folded_in(tmp_path):
    """A start let through unchecked appends a charge that the next load includes, this boot's only."""
    path = str(tmp_path / "ledger.json")
    ledger.save(path, BOOT, {E.vm_uuid: E})
    unchecked = Entry("0a0a0a0a-1b8a-4c43-9d4e-0a7b2a1c9e11", "late", ledger.UNKNOWN_NEED, 1001.0, None, "unchecked")
    ledger.append_charge(path, BOOT, unchecked)
    ledger.append_charge(path, "another-boot", unchecked._replace(vm_uuid="other"))
    loaded = ledger.take(path, BOOT)
    assert loaded.entries == {E.vm_uuid: E, unchecked.vm_uuid: unchecked}
    ledger.save(path, BOOT, loaded.entries, loaded)
    assert not os.path.exists(path + ".pending") and not os.path.exists(path + ".pending.taken")
    assert ledger.load(path, BOOT).entries == {E.vm_uuid: E, unchecked.vm_uuid: unchecked}


def test_appended_charges_file_that_grew_is_kept(tmp_path):
    """A charge appended after the appended charges' file was read is not removed with it."""
    path = str(tmp_path / "ledger.json")
    first = E._replace(how="unchecked")
    ledger.append_charge(path, BOOT, first)
    loaded = ledger.take(path, BOOT)
    assert loaded.entries is not None
    late = E._replace(vm_uuid="late", how="unchecked")
    ledger.append_charge(path, BOOT, late)
    ledger.save(path, BOOT, loaded.entries, loaded)
    assert set(read(path)) == {E.vm_uuid, "late"}


def test_a_charge_appended_as_the_read_charges_are_removed_is_not_lost(tmp_path, monkeypatch):
    """The appended charges read are removed once saved; a charge appended just before that removal
    (after any check of the file) stays charged: the charges are taken by rename before they are read."""
    path = str(tmp_path / "ledger.json")
    ledger.append_charge(path, BOOT, E._replace(how="unchecked"))
    late = E._replace(vm_uuid="late", how="unchecked")
    real_unlink = os.unlink
    appended: List[str] = []

    def unlink_after_an_append(target):
        if target.startswith(path + ".pending") and not appended:
            appended.append(target)
            ledger.append_charge(path, BOOT, late)  # the race: between the check and the removal
        real_unlink(target)

    monkeypatch.setattr(os, "unlink", unlink_after_an_append)
    loaded = ledger.take(path, BOOT)
    assert loaded.entries is not None
    ledger.save(path, BOOT, loaded.entries, loaded)
    assert appended
    assert set(read(path)) == {E.vm_uuid, "late"}


def test_a_directory_where_the_ledger_should_be_is_set_aside(tmp_path):
    """A directory at the ledger's path: set aside under the lock and the ledger rebuilt and written,
    never a failure of every decision."""
    path = str(tmp_path / "ledger.json")
    os.makedirs(os.path.join(path, "inside"))
    loaded = ledger.take(path, BOOT)
    assert loaded.entries is None and loaded.note is not None
    assert "a directory" in loaded.note and "kept as" in loaded.note
    ledger.save(path, BOOT, {E.vm_uuid: E}, loaded)
    assert ledger.load(path, BOOT).entries == {E.vm_uuid: E}
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith("ledger.json.corrupt-")]


def test_full_disk_is_a_clear_error(small_disk):
    """A full disk: LedgerUnavailable naming the file, the old ledger intact, no temporary left."""
    path = os.path.join(small_disk.path, "ledger.json")
    ledger.save(path, BOOT, {})
    small_disk.fill()
    big = {str(n): E._replace(vm_uuid=str(n)) for n in range(2000)}
    with pytest.raises(ledger.LedgerUnavailable, match="cannot write the ledger .*ledger.json"):
        ledger.save(path, BOOT, big)
    assert sorted(os.listdir(small_disk.path)) == ["ledger.json"]
    assert ledger.load(path, BOOT).entries == {}


def test_lock_wait_counts_against_the_deadline(tmp_path):
    """While another process holds the lock, waiting ends at the deadline."""
    path = str(tmp_path / "ledger.json")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl,os,sys,time; fd=os.open(sys.argv[1]+'.lock', os.O_RDWR|os.O_CREAT);"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), path],
        stdout=subprocess.PIPE)
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="ledger lock"):
            with ledger.locked(path, Deadline(0.3)):
                pass
        assert time.monotonic() - started < 2.0
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with ledger.locked(path, Deadline(1.0)) as waited:
            assert waited < 1.0  # the kernel released the dead holder's lock
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()


# A writer that SIGKILLs itself at one point of ``ledger.save``: before its first byte reaches the
# temporary file, half-way through it, once it is whole but not renamed, or just after the rename.
KILLED_WRITER = """
import os, signal, sys
from xsguard import ledger
from xsguard.model.charging import Entry

path, point = sys.argv[1], sys.argv[2]
write, rename = os.write, os.rename

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def killing_write(fd, data):
    if ".tmp-" in os.readlink("/proc/self/fd/%d" % fd):
        if point == "first-byte":
            die()
        if point == "half-way":
            write(fd, bytes(data)[:len(data) // 2])
            die()
    return write(fd, data)

def killing_rename(src, dst):
    if point == "before-rename":
        die()
    rename(src, dst)
    if point == "after-rename":
        die()

os.write, os.rename = killing_write, killing_rename
ledger.save(path, "boot", {str(n): Entry(str(n), "vm", 2, 0.0, None) for n in range(200)})
"""


@pytest.mark.parametrize("point, need, left_size", [
    ("first-byte", 1, "empty"),
    ("half-way", 1, "partial"),
    ("before-rename", 1, "whole"),
    ("after-rename", 2, None),
])
def test_writer_killed_inside_a_write_leaves_old_or_new(tmp_path, point, need, left_size):
    """A writer killed at each point of a save leaves a ledger that parses whole: the old version
    until the rename, the new one after; the next save replaces it."""
    path = str(tmp_path / "ledger.json")
    ledger.save(path, "boot", {str(n): Entry(str(n), "vm", 1, 0.0, None) for n in range(200)})
    whole = os.path.getsize(path)
    writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, path, point])
    assert writer.returncode == -signal.SIGKILL  # killed at that point, not finished
    left = [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n]
    if left_size is None:
        assert left == []
    else:
        size = os.path.getsize(os.path.join(str(tmp_path), left[0]))
        assert {"empty": size == 0, "partial": 0 < size < whole, "whole": size == whole}[left_size], size
    entries, note = ledger.load(path, "boot")[:2]
    assert note is None and entries is not None
    assert len(entries) == 200 and {e.need for e in entries.values()} == {need}
    ledger.save(path, "boot", {str(n): Entry(str(n), "vm", 3, 0.0, None) for n in range(200)})
    assert {e.need for e in read(path, "boot").values()} == {3}


def test_appended_charges_survive_a_rebuild(tmp_path):
    """A ledger of an earlier boot is rebuilt: the appended charges of this boot come with it, not lost."""
    path = str(tmp_path / "ledger.json")
    ledger.save(path, "another-boot", {E.vm_uuid: E})
    unchecked = E._replace(vm_uuid="0a0a0a0a-1b8a-4c43-9d4e-0a7b2a1c9e11", how="unchecked", peak=0)
    ledger.append_charge(path, BOOT, unchecked)
    loaded = ledger.load(path, BOOT)
    assert loaded.entries is None and loaded.unfolded == (unchecked,)


def test_fold_keeps_the_peak():
    """A later charge of a VM seen holding more than predicted keeps that figure."""
    seen = E._replace(peak=35)
    later = E._replace(admitted_at=E.admitted_at + 1, how="unchecked")
    assert ledger.fold({E.vm_uuid: seen}, [later])[E.vm_uuid].peak == 35
