"""The decision log: structlog records, whole lines under concurrency and rotation, operator signals."""

import gzip
import json
import os
import subprocess
import sys
import time

from structlog.testing import capture_logs

from tests.pool import failure, make_vm, small_host, wait_for
from xsguard import decisionlog
from xsguard.denials import log_files, read, summary


def test_a_failed_syslog_send_is_logged_as_xsguard_s_own_event(tmp_path):
    """A refusal's syslog line that cannot be sent (no syslog daemon): the hook logs syslog_failed, once,
    with the socket's error, and raises no alert when alerts are off."""
    from xsguard import config, journal

    cfg = config.defaults().with_values({"log.syslog_socket": str(tmp_path / "no-such-socket"),
                                         "log.alerts": "no", "ledger.path": str(tmp_path / "ledger.json")})
    notice = journal.Notice("refused VM 'x'", "XSGUARD_START_REFUSED", "body", "u")
    with capture_logs() as logs:
        journal.send_notice(cfg, notice, decisionlog.get())
    assert [(e["event"], e["log_level"]) for e in logs] == [("syslog_failed", "warning")]
    assert "No such file or directory" in logs[0]["error"]


def test_an_alert_is_raised_again_once_the_interval_has_passed(tmp_path):
    """One alert per VM per interval: a second within it is held back, one after it goes out; another
    VM is not held back by the first."""
    from xsguard.alerts import claim_alert

    path = str(tmp_path / "alerts.json")
    assert claim_alert(path, "vm-a", 3600, now=1000.0)
    assert not claim_alert(path, "vm-a", 3600, now=1000.0 + 3599)
    assert claim_alert(path, "vm-b", 3600, now=1000.0 + 3599)
    assert claim_alert(path, "vm-a", 3600, now=1000.0 + 3600)
    assert not claim_alert(path, "vm-a", 3600, now=1000.0 + 3601)
    with open(path) as handle:
        assert json.load(handle) == {"vm-a": 4600.0, "vm-b": 4599.0}


def test_hostile_name_gives_one_valid_json_line(tmp_path):
    """Newlines, quotes, ANSI escapes and non-ASCII in a name: still one JSON line, read back intact."""
    path = str(tmp_path / "decisions.log")
    decisionlog.configure(path)
    name = 'evil\n"quoted"\x1b[31mred\u00e9\U0001f600'
    decisionlog.get().warning("start_refused", vm_name=name, vm_uuid="u")
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    record = json.loads(data.decode("ascii"))
    assert record["vm_name"] == name
    assert record["event"] == "start_refused" and record["time"].endswith("Z") and record["version"]


WRITER = r"""
import sys, time
from xsguard import decisionlog
decisionlog.configure(sys.argv[1])
log = decisionlog.get()
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0
for i in range(int(sys.argv[3])):
    log.info("start_admitted", writer=int(sys.argv[2]), seq=i, padding="x" * 3000)
    time.sleep(pause)
"""


def test_concurrent_writers_write_whole_lines(tmp_path):
    """50 processes appending at once: every line whole, none lost."""
    path = str(tmp_path / "decisions.log")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(w), "40"]) for w in range(50)]
    for p in procs:
        assert p.wait() == 0
    with open(path) as handle:
        records = [json.loads(line) for line in handle]
    assert len(records) == 50 * 40
    assert {(r["writer"], r["seq"]) for r in records} == {(w, i) for w in range(50) for i in range(40)}


def test_rotation_mid_run_loses_nothing(tmp_path):
    """logrotate renames the file while writers run: old file plus new file hold every record."""
    path = str(tmp_path / "decisions.log")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(w), "200", "0.002"]) for w in range(4)]
    rotated = 0
    while any(p.poll() is None for p in procs):
        if os.path.exists(path):
            rotated += 1
            os.rename(path, "%s.%d" % (path, rotated))
        time.sleep(0.03)
    assert rotated >= 3
    seen = set()
    for name in log_files(path):
        if not os.path.exists(name):
            continue  # renamed last, and no record came after
        with open(name) as handle:
            for line in handle:
                r = json.loads(line)
                seen.add((r["writer"], r["seq"]))
    assert seen == {(w, i) for w in range(4) for i in range(200)}


def test_full_disk_keeps_the_decision(small_disk, capsys):
    """The log cannot be written: the record is reported on stderr, nothing raises."""
    path = os.path.join(small_disk.path, "decisions.log")
    small_disk.fill()
    decisionlog.configure(path)
    decisionlog.get().warning("start_refused", vm_uuid="u", padding="x" * 20000)
    assert "cannot write the decision log" in capsys.readouterr().err


def wait_records(path, count):
    """The log's records once it holds ``count``: the hook's detached child writes them."""
    def records():
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            found = [json.loads(line) for line in handle]
        return found if len(found) >= count else None

    return wait_for(records)


def refusal(i, vm="a", host="h", hour="08"):
    return {"event": "start_refused", "time": "2026-11-26T%s:%02d:00.000000Z" % (hour, i % 60),
            "vm_uuid": vm + "-uuid", "vm_name": vm, "host_uuid": host + "-uuid", "host_name": host,
            "ceiling": "xen_ports", "need": 10, "checks": []}


def test_denials_reads_rotated_and_compressed_files_and_skips_corrupt_lines(tmp_path):
    """Current, .1 and .2.gz files are all read; a corrupt line is counted, not fatal."""
    path = str(tmp_path / "decisions.log")
    with gzip.open(path + ".2.gz", "wt") as handle:
        handle.write(json.dumps(refusal(1)) + "\n")
    with open(path + ".1", "w") as handle:
        handle.write(json.dumps(refusal(2, vm="b")) + "\n" + '{"event": "start_refused", "time": \n')
    with open(path, "w") as handle:
        handle.write(json.dumps(refusal(3)) + "\n" + json.dumps(dict(refusal(4), event="start_admitted")) + "\n")
        handle.write("garbage\x00line\n")
    found = read(path)
    assert [r["time"][14:16] for r in found.records] == ["03", "02", "01"]
    assert found.corrupt == 2
    assert [r["vm_name"] for r in read(path, vm="b").records] == ["b"]
    assert [g["count"] for g in summary(found.records)] == [2, 1]


def test_denials_reads_date_suffixed_rotations_in_order(tmp_path):
    """logrotate's dateext names (-20261124.gz, -20261125): read oldest first after numbered ones,
    so that the newest refusal comes first; other files beside the log are not read."""
    path = str(tmp_path / "decisions.log")
    with gzip.open(path + "-20261124.gz", "wt") as handle:
        handle.write(json.dumps(refusal(1, hour="06")) + "\n")
    with open(path + "-20261125", "w") as handle:
        handle.write(json.dumps(refusal(2, hour="07")) + "\n")
    with open(path, "w") as handle:
        handle.write(json.dumps(refusal(3, hour="08")) + "\n")
    with open(path + ".bak", "w") as handle:
        handle.write(json.dumps(refusal(4, hour="09")) + "\n")
    assert log_files(path) == [path + "-20261124.gz", path + "-20261125", path]
    assert [r["time"][11:13] for r in read(path).records] == ["08", "07", "06"]


def test_denials_since(tmp_path):
    """--since keeps what is newer."""
    path = str(tmp_path / "decisions.log")
    with open(path, "w") as handle:
        for hour in ("06", "07", "08"):
            handle.write(json.dumps(refusal(0, hour=hour)) + "\n")
    from xsguard.denials import iso_to_epoch, parse_since

    assert len(read(path, since=parse_since("2026-11-26T07:00")).records) == 2
    assert parse_since("2h", now=iso_to_epoch("2026-11-26T08:00")) == iso_to_epoch("2026-11-26T06:00")


def test_refusal_on_the_pool_leaves_record_syslog_and_one_alert(api):
    """A refused start: a log record, a syslog line, one xapi message; a second refusal: no second message."""
    host = small_host(api, port_limit=100, vcpus=4)
    vm = make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
    uuid = api.VM.get_uuid(vm)
    failure(api.VM.start, vm, False, False)
    failure(api.VM.start, vm, False, False)
    root = api.sim.get_host_root(host)
    events = [r["event"] for r in wait_records(os.path.join(root, "var", "log", "xsguard", "decisions.log"), 2)]
    assert events == ["start_refused", "start_refused"]
    lines = wait_for(lambda: api.sim.get_syslog(host) if len(api.sim.get_syslog(host)) >= 2 else None)
    assert len(lines) == 2
    assert lines[0].startswith("<28>xsguard[") and "refused VM 'big' (%s) on host 'xs-a'" % uuid in lines[0]
    messages = [m for m in api.message.get_all_records().values() if m["name"] == "XSGUARD_START_REFUSED"]
    assert len(messages) == 1
    assert (messages[0]["cls"], messages[0]["obj_uuid"], messages[0]["priority"]) == ("VM", uuid, "3")
    assert "xsguard refused to start VM 'big'" in messages[0]["body"]


def test_failed_alert_does_not_change_the_verdict(api, sim):
    """message.create failing (a role without the right, a slow master): still refused, still logged."""
    host = small_host(api, port_limit=100, vcpus=4)
    vm = make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
    sim.pool.store.tables.pop("message")  # the call now fails inside xapi
    details = failure(api.VM.start, vm, False, False)
    assert details[0] == "XAPI_HOOK_FAILED" and details[4] == "2"
    root = api.sim.get_host_root(host)
    events = [r["event"] for r in wait_records(os.path.join(root, "var", "log", "xsguard", "decisions.log"), 2)]
    assert events == ["start_refused", "alert_failed"]




def test_unwritable_decision_log_sends_the_record_to_syslog(api):
    """The hook's log path cannot be created: the refusal stands and its record reaches syslog with a note."""
    host = small_host(api, port_limit=100, vcpus=4)
    root = api.sim.get_host_root(host)
    unwritable = os.path.join(root, "etc", "xensource-inventory", "decisions.log")  # under a file
    api.sim.set_xsguard_config(host, {"log.file": unwritable, "log.syslog": "no"})
    vm = make_vm(api, "big", vcpus=32, hvm=True, disks=4, nics=2, affinity=host)
    details = failure(api.VM.start, vm, False, False)
    assert details[0] == "XAPI_HOOK_FAILED" and details[4] == "2"
    lines = wait_for(lambda: api.sim.get_syslog(host))
    assert "cannot write the decision log %s" % unwritable in lines[0]
    record = json.loads(lines[0].split("; the record: ", 1)[1])
    assert (record["event"], record["vm_name"], record["verdict"]) == ("start_refused", "big", "refuse")
