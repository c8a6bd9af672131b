"""The ledger file: atomic writes, corrupt files set aside, a lock the kernel releases."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from xsguard import ledger
from xsguard.deadline import Deadline
from xsguard.errors import DeadlineExceeded
from xsguard.promises import Entry

E = Entry("6f1c6d3e-1b8a-4c43-9d4e-0a7b2a1c9e11", "vm", 22, 1000.0, None)


def test_round_trip(tmp_path):
    """What is saved loads back."""
    path = str(tmp_path / "ledger.json")
    ledger.save(path, {E.vm_uuid: E})
    assert ledger.load(path) == ({E.vm_uuid: E}, None)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_missing_is_empty(tmp_path):
    """No ledger yet: empty, no note."""
    assert ledger.load(str(tmp_path / "none.json")) == ({}, None)


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b'{"version": 9, "entries": []}',
                                     b'{"version": 1, "entries": [{"need": 3}]}', b"[]"])
def test_corrupt_is_set_aside(tmp_path, content):
    """A ledger that does not parse is kept aside for inspection and read as empty."""
    path = str(tmp_path / "ledger.json")
    with open(path, "wb") as handle:
        handle.write(content)
    entries, note = ledger.load(path)
    assert entries == {}
    assert "kept as" in note
    aside = [n for n in os.listdir(str(tmp_path)) if n.startswith("ledger.json.corrupt-")]
    assert len(aside) == 1
    with open(str(tmp_path / aside[0]), "rb") as handle:
        assert handle.read() == content


def test_read_only_load_leaves_corrupt_file(tmp_path):
    """``status`` and ``check`` read without moving anything."""
    path = str(tmp_path / "ledger.json")
    with open(path, "w") as handle:
        handle.write("{")
    entries, note = ledger.load(path, set_aside=False)
    assert entries == {} and "read as empty" in note and os.path.exists(path)


def test_full_disk_is_a_clear_error(small_disk):
    """A full disk: LedgerUnavailable naming the file, the old ledger intact, no temporary left."""
    path = os.path.join(small_disk.path, "ledger.json")
    with open(path, "w") as handle:
        handle.write('{"version": 1, "entries": []}')
    small_disk.fill()
    big = {str(n): E._replace(vm_uuid=str(n)) for n in range(2000)}
    with pytest.raises(ledger.LedgerUnavailable, match="cannot write the ledger .*ledger.json"):
        ledger.save(path, big)
    assert os.listdir(small_disk.path) == ["ledger.json"]
    assert ledger.load(path) == ({}, None)


def test_lock_wait_counts_against_the_deadline(tmp_path):
    """While another process holds the lock, waiting ends at the deadline."""
    path = str(tmp_path / "ledger.json")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl,os,sys,time; fd=os.open(sys.argv[1]+'.lock', os.O_RDWR|os.O_CREAT);"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"), path],
        stdout=subprocess.PIPE)
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


def test_kill_during_writes_leaves_old_or_new(tmp_path):
    """A writer killed at random points leaves a ledger that parses, old version or new."""
    path = str(tmp_path / "ledger.json")
    script = (
        "import sys; from xsguard import ledger; from xsguard.promises import Entry\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    ledger.save(sys.argv[1], {str(n): Entry(str(n), 'vm', i, 0.0, None) for n in range(200)})\n"
    )
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31):
        writer = subprocess.Popen([sys.executable, "-c", script, path])
        time.sleep(delay + 0.3)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        entries, note = ledger.load(path)
        assert note is None
        assert len(entries) == 200
        assert len({e.need for e in entries.values()}) == 1
    with open(path) as handle:
        assert json.load(handle)["version"] == 1
