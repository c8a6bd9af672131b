"""The journal: a decision's events, counters and notices, written once the status is out, in a
detached child when one can be made safely and here otherwise, never lost.

Each case runs in a fresh interpreter, as a hook does (dom0's Python 3.6 under ``make test-py36``):
the test process has threads of its own (a simulated pool's), which would make any case take the
path of a process that is not alone."""

import json
import os
import subprocess
import sys

import pytest

from xsguard import config, state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PUBLISH = r"""
import os, sys, threading
from xsguard import config, journal, state

def fork_fails():
    raise BlockingIOError(11, "Resource temporarily unavailable")

def fork_forbidden():
    raise AssertionError("forked while another thread ran")

case, log_file, ledger = sys.argv[1:4]
cfg = config.defaults().with_values({"log.file": log_file, "log.syslog": "no", "log.alerts": "no",
                                     "ledger.path": ledger})
log = journal.Journal(operation="start").bind(vm_uuid="u-1", reason="none")
log.warning("start_refused", need=40, ceiling="ports")
log.counters.append(state.COUNT_REFUSED)
release = threading.Event()
if case == "no-fork":
    os.fork = fork_fails
elif case == "straggler":
    os.fork = fork_forbidden
    journal.FORK_GRACE = 0.05
    threading.Thread(target=release.wait, args=(10,), daemon=True).start()
journal.publish(cfg, log)
print("returned in", os.getpid())
"""

ALONE = r"""
import sys, threading
from xsguard import journal
release = threading.Event()
threading.Thread(target=release.wait, args=(float(sys.argv[1]),), daemon=True).start()
print(journal._alone(0.5))
"""


def run(python, script, *args):
    return subprocess.run([python or sys.executable, "-c", script] + [str(a) for a in args], cwd=ROOT, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode().split("\n")


def published_here(tmp_path, python, case):
    """Runs ``publish`` in a fresh interpreter under ``case``; the decision log's records and the
    refusal counter, once ``publish`` has returned (with no child to wait for)."""
    log_file, ledger = tmp_path / "decisions.log", tmp_path / "state" / "ledger.json"
    assert run(python, PUBLISH, case, log_file, ledger)[0].startswith("returned in")
    cfg = config.defaults().with_values({"ledger.path": str(ledger)})
    with open(str(log_file), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    with open(state.path(cfg, "count." + state.COUNT_REFUSED), "rb") as handle:
        return records, len(handle.read())


def test_no_child_can_be_made_so_the_journal_is_written_here(tmp_path, dom0_python):
    """``fork`` failing (EAGAIN: dom0 out of processes): the events and the counter are written by the
    hook's own process before ``publish`` returns."""
    records, refused = published_here(tmp_path, dom0_python, "no-fork")
    assert [(r["event"], r["vm_uuid"], r["need"], r["operation"]) for r in records] == \
        [("start_refused", "u-1", 40, "start")]
    assert refused == 1


def test_a_thread_still_running_means_no_fork(tmp_path, dom0_python):
    """Another thread outliving the grace (a host still asked past its deadline): no child is forked,
    since it could inherit a lock that thread holds; the journal is written here."""
    records, refused = published_here(tmp_path, dom0_python, "straggler")
    assert ([r["event"] for r in records], refused) == (["start_refused"], 1)


@pytest.mark.parametrize("lives, alone", [(0.02, "True"), (10.0, "False")], ids=["ends-in-time", "outlives"])
def test_the_grace_waits_for_a_thread_that_ends(lives, alone, dom0_python):
    """A thread that ends within the grace is waited for (then a child may be forked); one that does
    not is given up on once the grace has passed."""
    assert run(dom0_python, ALONE, lives)[0] == alone
