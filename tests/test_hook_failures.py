"""The hook's failure branches, driven through its entry point (``xsguard.hook.main``, as the installed
hook calls it, or the hook itself run by the simulated xenopsd)."""

import fcntl
import json
import os
import signal
import subprocess
import threading

import pytest

from tests.pool import decision_log, make_vm, small_host, wait_for


@pytest.fixture
def in_process(api, monkeypatch):
    """Run ``hook.main`` in this process against a host of the simulated pool; its SIGALRM handler
    (the deadline's backstop) is put back afterwards."""
    from xsguard import hook

    host = small_host(api, port_limit=4095)
    root = api.sim.get_host_root(host)
    monkeypatch.setenv("XSGUARD_CONFIG", os.path.join(root, "etc", "xsguard", "xsguard.conf"))
    previous = signal.getsignal(signal.SIGALRM)

    def run(vm, *argv):
        return hook.main(["-vmuuid", api.VM.get_uuid(vm), "-reason", "none"] + list(argv))

    yield host, run
    signal.signal(signal.SIGALRM, previous)


def test_no_child_is_forked_while_another_thread_runs(api, in_process, monkeypatch):
    """The simulator's threads run in this process for good: the hook writes its decision log itself
    rather than fork beside them (a child forked while a thread holds a lock may block on it forever)."""
    host, run = in_process
    vm = make_vm(api, "a", affinity=host)
    forked = []

    def fork():
        forked.append(threading.active_count())
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", fork)
    assert threading.active_count() > 1
    assert run(vm) == 0
    assert forked == []
    assert [(r["event"], r["vm_name"]) for r in decision_log(api, host, 1)] == [("start_admitted", "a")]


def run_hook(api, host, *argv, hook="vm-pre-start", stdout_closed=False):
    """The hook installed on ``host`` run as xenopsd runs it (PATH and XSGUARD_CONFIG only), but by this
    test, which waits for it: (exit status, stdout)."""
    from xsguard.sim.processes import environment

    root = api.sim.get_host_root(host)
    path = os.path.join(root, "etc", "xapi.d", hook, "50xsguard")
    command = [path] + list(argv)
    if stdout_closed:
        command = ["/bin/sh", "-c", 'exec "$0" "$@" >&-'] + command
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=environment(os.path.join(root, "etc", "xsguard", "xsguard.conf")), cwd="/")
    return proc.returncode, proc.stdout.decode()


def appended(api, host):
    """The charges of starts let through unchecked, as the ledger's appended charges' file holds them."""
    path = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json.pending")
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_a_hook_run_without_vmuuid_goes_on_loudly_and_charges_nothing(api):
    """Arguments without -vmuuid: a guard error; on_error = allow lets the start go on (exit 1) saying
    why, and that no VM could be charged; logged, counted."""
    host = small_host(api, port_limit=4095)
    code, out = run_hook(api, host, "-reason", "none")
    assert code == 1
    assert "missing -vmuuid in hook arguments: -reason none" in out
    assert "not charged (no VM named)" in out
    records = decision_log(api, host, 2)
    assert [(r["event"], r["error"]) for r in records] == [("guard_error", "XSGUARD_BAD_ARGUMENT"),
                                                           ("start_unchecked", "XSGUARD_BAD_ARGUMENT")]
    assert records[1]["charged"] == "not charged (no VM named)"
    status = json.loads(api.host.call_plugin(host, "xsguard", "status", {}))
    assert status["unchecked"] == 1


def test_a_resume_with_a_domid_that_is_no_number_is_charged_unknown(api):
    """-vmdomid abc on a resume: a guard error before the VM's need is known; let through (exit 1) and
    charged as an appended charge whose need the next decision computes."""
    host = small_host(api, port_limit=4095)
    vm = make_vm(api, "a", affinity=host)
    uuid = api.VM.get_uuid(vm)
    code, out = run_hook(api, host, "-vmuuid", uuid, "-reason", "none", "-vmdomid", "abc", hook="vm-pre-resume")
    assert code == 1
    assert "-vmdomid must be a domain id, not 'abc'" in out
    assert "charged its need once the next decision can compute it" in out
    assert [(p["vm_uuid"], p["need"], p["how"]) for p in appended(api, host)] == [(uuid, -1, "unchecked")]
    assert [r["event"] for r in decision_log(api, host, 2)] == ["guard_error", "resume_unchecked"]


def test_a_migration_of_a_vm_xapi_does_not_know_goes_on_uncharged(api):
    """The pre-migrate hook for a uuid xapi does not know: a guard error, let through (exit 1); nothing
    is charged here (the VM would run on another host); the VM alert cannot be raised on a VM xapi
    does not know (message.create checks its object), and that is logged too."""
    host = small_host(api, port_limit=4095)
    code, out = run_hook(api, host, "-vmuuid", "7e1b1c55-0000-4000-8000-000000000000", "-reason", "none",
                         "-vmdomid", "3", hook="vm-pre-migrate")
    assert code == 1
    assert "no VM has uuid '7e1b1c55-0000-4000-8000-000000000000'" in out
    assert "not charged (the destination was not read)" in out
    assert [r["event"] for r in decision_log(api, host, 3)] == ["guard_error", "migrate_unchecked", "alert_failed"]


def test_a_start_that_cannot_get_the_ledger_lock_is_charged_its_need(api):
    """Another process holds the ledger's lock past the deadline: the start goes on (exit 1) charged its
    need of 5 as an appended charge, which the next decision folds into the ledger."""
    host = small_host(api, port_limit=4095, config={"policy.deadline": "1"})
    vm = make_vm(api, "a", affinity=host)
    uuid = api.VM.get_uuid(vm)
    ledger = os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "ledger.json")
    os.makedirs(os.path.dirname(ledger), mode=0o700, exist_ok=True)
    fd = os.open(ledger + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        api.VM.start(vm, False, False)
    finally:
        os.close(fd)
    run = api.sim.get_hook_log()[-1]
    assert run["exit_code"] == "1"
    assert "ledger lock" in run["stdout"] and "charged its need of 5" in run["stdout"]
    assert [(p["vm_uuid"], p["need"], p["how"]) for p in appended(api, host)] == [(uuid, 5, "unchecked")]
    api.VM.start(make_vm(api, "b", affinity=host), False, False)
    assert api.sim.get_hook_log()[-1]["exit_code"] == "0"
    with open(ledger) as handle:
        assert {e["vm_uuid"]: (e["need"], e["how"]) for e in json.load(handle)["entries"]}[uuid] == (5, "unchecked")


def test_a_start_let_through_whose_charge_cannot_be_written_says_so(api, tmp_path):
    """The ledger's directory is unusable (a file stands where it should be): the start goes on (exit 1)
    saying it was NOT charged and why; charge_failed is logged."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    host = small_host(api, port_limit=4095, config={"ledger.path": str(blocker / "ledger.json")})
    vm = make_vm(api, "a", affinity=host)
    code, out = run_hook(api, host, "-vmuuid", api.VM.get_uuid(vm), "-reason", "none")
    assert code == 1
    assert "NOT charged (File exists)" in out
    # the counter and the alert's state live in the same directory: they fail too, and say so
    events = [r["event"] for r in decision_log(api, host, 5)]
    assert events == ["count_failed", "guard_error", "charge_failed", "start_unchecked", "alert_failed"]


def test_a_refusal_whose_counter_cannot_be_bumped_still_refuses(api):
    """The refusal counter's file cannot be written: the start is refused all the same (exit 2) and
    count_failed is logged beside the refusal."""
    host = small_host(api, port_limit=60, vcpus=4, config={"log.alerts": "no"})
    vm = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    os.makedirs(os.path.join(api.sim.get_host_root(host), "var", "lib", "xsguard", "count.refused"))
    code, out = run_hook(api, host, "-vmuuid", api.VM.get_uuid(vm), "-reason", "none")
    assert code == 2 and "xsguard refused to start VM 'big'" in out
    records = decision_log(api, host, 2)
    assert sorted(r["event"] for r in records) == ["count_failed", "start_refused"]
    assert [r["counter"] for r in records if r["event"] == "count_failed"] == ["refused"]


def test_a_hook_whose_stdout_is_closed_still_decides_and_logs(api):
    """xenopsd's pipe gone (stdout closed): the refusal stands (exit 2) and its decision log record is
    written all the same."""
    host = small_host(api, port_limit=60, vcpus=4, config={"log.alerts": "no"})
    vm = make_vm(api, "big", vcpus=8, hvm=True, disks=1, nics=1, affinity=host)
    code, out = run_hook(api, host, "-vmuuid", api.VM.get_uuid(vm), "-reason", "none", stdout_closed=True)
    assert (code, out) == (2, "")
    assert [r["event"] for r in decision_log(api, host, 1)] == ["start_refused"]


def test_a_hook_interrupted_while_it_waits_for_the_ledger_lets_the_start_go_on_charged(api):
    """SIGINT reaches the hook while it waits for the ledger's lock: a guard error "interrupted", the
    start let through (exit 1) and charged its need, never an accidental status."""
    from xsguard.sim.processes import environment

    host = small_host(api, port_limit=4095, config={"policy.deadline": "30"})
    vm = make_vm(api, "a", affinity=host)
    root = api.sim.get_host_root(host)
    ledger = os.path.join(root, "var", "lib", "xsguard", "ledger.json")
    os.makedirs(os.path.dirname(ledger), mode=0o700, exist_ok=True)
    fd = os.open(ledger + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with subprocess.Popen([os.path.join(root, "etc", "xapi.d", "vm-pre-start", "50xsguard"),
                               "-vmuuid", api.VM.get_uuid(vm), "-reason", "none"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=environment(os.path.join(root, "etc", "xsguard", "xsguard.conf"))) as proc:
            wait_for(lambda: holds(proc.pid, ledger + ".lock"))  # it waits for the lock now
            proc.send_signal(signal.SIGINT)
            assert proc.stdout is not None
            out = proc.stdout.read().decode()
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert "interrupted (KeyboardInterrupt)" in out and "charged its need of 5" in out
    assert [r["event"] for r in decision_log(api, host, 2)] == ["guard_error", "start_unchecked"]


def holds(pid, path):
    """Whether process ``pid`` has ``path`` open."""
    directory = "/proc/%d/fd" % pid
    try:
        return any(os.readlink(os.path.join(directory, fd)) == path for fd in os.listdir(directory))
    except OSError:
        return False
