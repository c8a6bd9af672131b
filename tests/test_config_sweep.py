"""Every key of the configuration schema, swept: a valid value other than its default changes what
xsguard reports or does (status, need, check, the decision log, syslog, alerts...), and an invalid
value is an error naming the key. A key added to ``config.SCHEMA`` without an entry here fails."""

import json
import os
import shutil
import socket
import threading
import time
import uuid as uuids
from contextlib import contextmanager
from types import SimpleNamespace
from typing import cast

import pytest

from tests.pool import make_vm, small_host
from xsguard import config

VCPUS = 4  # the guest's vCPUs, and the simulated dom0's


@pytest.fixture
def ctx(api, tmp_path, monkeypatch, request):
    """A 4-vCPU host (its ceilings auto-detected) and a halted 4-vCPU Windows HVM guest (2 disks, 1 NIC)."""
    host = small_host(api, vcpus=VCPUS, config={"dom0.port_limit": "auto", "dom0.irq_limit": "auto"})
    vm = make_vm(api, "w", vcpus=VCPUS, hvm=True, windows=True, disks=2, nics=1, affinity=host)
    root = api.sim.get_host_root(host)
    base = config.load(os.path.join(root, "etc", "xsguard", "xsguard.conf"))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    return SimpleNamespace(api=api, host=host, vm=api.VM.get_uuid(vm), root=root, tmp=tmp_path,
                           fresh={"ledger.path": str(state_dir / "ledger.json")},  # no ceilings kept yet
                           base=base, monkeypatch=monkeypatch, request=request)


def configured(c, key, value, **more):
    return c.base.with_values(dict(c.fresh, **{key: value}, **more))


def status_of(cfg):
    from xsguard import status
    from xsguard.deadline import Deadline
    from xsguard.xapi import Xapi

    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        return status.read(cfg, xs, Deadline(5))


def need_of(c, cfg):
    from xsguard import report
    from xsguard.deadline import Deadline
    from xsguard.xapi import Xapi

    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        return report.need_report(cfg, xs, c.vm, Deadline(5))


def check_of(c, cfg):
    from xsguard import report
    from xsguard.deadline import Deadline
    from xsguard.xapi import Xapi

    with Xapi(cfg.xapi.url, Deadline(5)) as xs:
        return report.check_report(cfg, xs, c.vm, Deadline(5))


def line(need, consumer):
    return next(b for b in need["breakdown"] if b["consumer"] == consumer)


def copy_of(c, relative):
    target = str(c.tmp / os.path.basename(relative))
    (shutil.copytree if os.path.isdir(os.path.join(c.root, relative)) else shutil.copy2)(
        os.path.join(c.root, relative), target)
    return target


def probe_fails_naming(c, key):
    from xsguard.errors import ProbeFailed

    missing = str(c.tmp / "missing")
    with pytest.raises(ProbeFailed, match=missing):
        status_of(configured(c, key, missing))


def journal_with_notice(c, cfg, text):
    from xsguard.journal import Journal, Notice, _write_journal

    log = Journal(operation="start", vm_uuid=c.vm)
    log.notices.append(Notice(text, "XSGUARD_START_REFUSED", text, c.vm))
    _write_journal(cfg, log)


def alerts_sent(c):
    return [m for m in c.api.message.get_all_records().values() if m["obj_uuid"] == c.vm]


# -- one check per key: each sets a value other than the default, and sees it take effect --------

def check_lsevtchn(c):
    """status names the lsevtchn it ran (a copy), and fails naming a path where there is none."""
    copy = copy_of(c, os.path.join("usr", "libexec", "xen", "bin", "lsevtchn"))
    assert status_of(configured(c, "dom0.lsevtchn", copy))["lsevtchn"] == copy
    probe_fails_naming(c, "dom0.lsevtchn")


def check_probe_timeout(c):
    from xsguard import probes

    seen = []
    real = probes.run_lsevtchn

    def run_lsevtchn(path, timeout):
        seen.append(timeout)
        return real(path, timeout)

    c.monkeypatch.setattr(probes, "run_lsevtchn", run_lsevtchn)
    status_of(configured(c, "dom0.probe_timeout", "0.75"))
    assert seen and all(t == 0.75 for t in seen)


def check_proc_interrupts(c):
    copy = copy_of(c, os.path.join("proc", "interrupts"))
    assert status_of(configured(c, "dom0.proc_interrupts", copy))["irqs_used"] == status_of(c.base)["irqs_used"]
    probe_fails_naming(c, "dom0.proc_interrupts")


def check_kernel_log(c):
    copy = copy_of(c, os.path.join("var", "log", "kern.log"))
    assert copy in status_of(configured(c, "dom0.kernel_log", copy))["irq_limit_source"]


def check_kernel_ring(c):
    copy = copy_of(c, os.path.join("dev", "kmsg"))
    shown = status_of(configured(c, "dom0.kernel_ring", copy, **{"dom0.kernel_log": str(c.tmp / "none")}))
    assert copy in shown["irq_limit_source"] and copy in shown["port_limit_source"]


def check_proc_stat(c):
    """A boot that began after every kernel log line: the log is an earlier boot's, the ring is read."""
    stat = c.tmp / "stat"
    stat.write_text("btime 4102444800\n")  # 2100
    shown = status_of(configured(c, "dom0.proc_stat", str(stat)))
    assert "kern.log" not in shown["irq_limit_source"] and "kmsg" in shown["irq_limit_source"]


def check_cmdline(c):
    """No boot line anywhere: the port limit is inferred, 2-level (4095) from the simulated dom0's command
    line (xen.fifo_events=0), FIFO (131071, Xen 4.17) from one that does not turn FIFO off."""
    cmdline = c.tmp / "cmdline"
    cmdline.write_text("root=/dev/sda1 ro console=hvc0\n")
    nothing = {"dom0.kernel_log": str(c.tmp / "none"), "dom0.kernel_ring": str(c.tmp / "none2")}
    default = dict(nothing, **{"ledger.path": str(c.tmp / "default" / "ledger.json")})
    os.makedirs(str(c.tmp / "default"))
    assert status_of(c.base.with_values(default))["port_limit"] == 4095
    shown = status_of(configured(c, "dom0.cmdline", str(cmdline), **nothing))
    assert shown["port_limit"] == 131071 and "inferred from the kernel command line" in shown["port_limit_source"]


def check_boot_id(c):
    from xsguard import state

    boot = c.tmp / "boot_id"
    boot.write_text(str(uuids.uuid4()) + "\n")
    assert state.boot_id(configured(c, "dom0.boot_id", str(boot))) == boot.read_text().strip()


def check_hypervisor(c):
    """No boot line anywhere: the port limit is inferred from the Xen version the directory gives."""
    hyp = c.tmp / "hypervisor" / "version"
    hyp.mkdir(parents=True)
    (hyp / "major").write_text("4\n")
    (hyp / "minor").write_text("1\n")  # before FIFO event channels (4.4)
    nothing = {"dom0.kernel_log": str(c.tmp / "none"), "dom0.kernel_ring": str(c.tmp / "none2")}
    shown = status_of(configured(c, "dom0.hypervisor", str(c.tmp / "hypervisor"), **nothing))
    assert shown["port_limit"] == 4095 and "4.1" in shown["port_limit_source"]


def check_sys_module(c):
    """netback granting 2 queues: a 4-vCPU guest's VIF is charged 2 queues x 2 (+ its control ring)."""
    copy = copy_of(c, os.path.join("sys", "module"))
    params = os.path.join(copy, "xen_netback", "parameters")
    os.makedirs(params, exist_ok=True)
    with open(os.path.join(params, "max_queues"), "w") as handle:
        handle.write("2\n")
    assert line(need_of(c, configured(c, "dom0.sys_module", copy)), "vif 0")["ports"] == 2 * 2 + 1


def check_inventory(c):
    other = c.api.sim.add_host("xs-b", {"vcpus": "4", "abi": "2-level", "port_limit": "500"})
    inventory = c.tmp / "inventory"
    inventory.write_text("INSTALLATION_UUID='%s'\n" % c.api.host.get_uuid(other))
    shown = status_of(configured(c, "dom0.inventory", str(inventory)))
    assert (shown["host_uuid"], shown["host_name"]) == (c.api.host.get_uuid(other), "xs-b")


def check_port_limit(c):
    shown = status_of(configured(c, "dom0.port_limit", "777"))
    assert (shown["port_limit"], shown["port_limit_source"]) == (777, "configured ([dom0] port_limit)")


def check_irq_limit(c):
    shown = status_of(configured(c, "dom0.irq_limit", "888"))
    assert (shown["irq_limit"], shown["irq_limit_source"]) == (888, "configured ([dom0] irq_limit)")


def check_mode(c):
    assert check_of(c, configured(c, "policy.mode", "warn"))["mode"] == "warn"


def check_on_error(c):
    """xapi not answering: the hook denies the start (exit 2) rather than allowing it (exit 1)."""
    from tests.test_hook import hook_in_process

    c.api.sim.set_xsguard_config(c.host, {"policy.on_error": "deny", "xapi.url": "http://127.0.0.1:1/",
                                          "policy.deadline": "1"})
    status, records = hook_in_process(c.api, c.host, c.api.VM.get_by_uuid(c.vm), c.monkeypatch)
    assert status == 2 and records[-1]["vm_uuid"] == c.vm


def check_margin(c):
    shown = status_of(configured(c, "policy.margin", "100"))
    assert shown["margin"] == 100 and shown["ports_free"] == shown["port_limit"] - shown["ports_used"] - 100


def check_deadline(c):
    from xsguard import plugin

    assert plugin.deadline_of("status", {}, configured(c, "policy.deadline", "42")).seconds == 42


def check_profile(c):
    need = need_of(c, configured(c, "policy.profile", "xs62"))
    assert need["profile"] == "xs62"
    assert line(need, "qemu-ioreq")["ports"] == 2 * VCPUS  # xs62: 2 per vCPU, no buffered ioreq


def check_reboot(c):
    from xsguard import commit
    from xsguard.gather import Gathered
    from xsguard.model.verdict import Verdict

    # stand-ins holding only what policy_of reads
    gathered = cast(Gathered, SimpleNamespace(bypassed=False, rebooting=True))
    refused = cast(Verdict, SimpleNamespace(admitted=False))
    assert commit.policy_of(configured(c, "policy.reboot", "check"), gathered, refused).exit == commit.EXIT_REFUSE
    assert commit.policy_of(c.base, gathered, refused) == commit.REBOOT_OVER_CEILING


def check_bypass(c):
    cfg = configured(c, "policy.bypass", c.vm)
    assert need_of(c, cfg)["bypassed"] is True and check_of(c, cfg)["bypassed"] is True


def check_vbd_backend(c):
    cfg = configured(c, "need.vbd_backend", "blkback")
    assert status_of(cfg)["storage_backend"]["charged"] == "blkback"
    disk = line(need_of(c, cfg), "vbd 0 (Disk)")
    assert disk["ports"] == VCPUS and disk["why"].startswith("blkback:") and "[need] vbd_backend" in disk["why"]


def check_rings_per_vbd(c):
    disk = line(need_of(c, configured(c, "need.rings_per_vbd", "3")), "vbd 0 (Disk)")
    assert disk["ports"] == 3 and "rings_per_vbd = 3" in disk["why"]


def check_netback_queue_cap(c):
    vif = line(need_of(c, configured(c, "need.netback_queue_cap", "2")), "vif 0")
    assert vif["ports"] == 2 * 2 + 1 and "netback_queue_cap = 2" in vif["why"]


def check_split_event_channels(c):
    vif = line(need_of(c, configured(c, "need.split_event_channels", "no")), "vif 0")
    assert vif["ports"] == VCPUS * 1 + 1 and "split_event_channels = no" in vif["why"]


def check_ctrl_ring(c):
    vif = line(need_of(c, configured(c, "need.ctrl_ring", "never")), "vif 0")
    assert vif["ports"] == VCPUS * 2 and "ctrl_ring = never" in vif["why"]


def check_extra_per_vm(c):
    need = need_of(c, configured(c, "need.extra_per_vm", "7"))
    assert line(need, "allowance") == {"consumer": "allowance", "ports": 7,
                                       "why": "site allowance ([need] extra_per_vm)"}
    assert need["total"] == need_of(c, c.base)["total"] + 7


def check_vif_queues(c):
    vif = line(need_of(c, configured(c, "need.vif_queues", "backend_max")), "vif 0")
    assert "[need] vif_queues = backend_max" in vif["why"]


def check_vbd_rings(c):
    cfg = configured(c, "need.vbd_rings", "backend_max", **{"need.vbd_backend": "blkback"})
    assert "[need] vbd_rings = backend_max" in line(need_of(c, cfg), "vbd 0 (Disk)")["why"]


def check_url(c):
    from xsguard.errors import XapiUnreachable

    with pytest.raises(XapiUnreachable, match="on http://127.0.0.1:1/"):
        status_of(configured(c, "xapi.url", "http://127.0.0.1:1/"))


def check_ca_file(c):
    """An https:// URL whose certificate only the configured file vouches for: answered with it."""
    from xsguard.deadline import Deadline
    from xsguard.errors import XapiCertificate
    from xsguard.xapi import Xapi

    url, cert = c.request.getfixturevalue("https_url")
    with Xapi(url, Deadline(5), ca_file=configured(c, "xapi.ca_file", cert).xapi.ca_file) as xs:
        assert xs.call("VM.get_by_uuid", c.vm)
    with pytest.raises(XapiCertificate):
        with Xapi(url, Deadline(5), ca_file=c.base.xapi.ca_file or None) as xs:
            xs.call("VM.get_by_uuid", c.vm)


def check_path(c):
    from xsguard import state

    cfg = configured(c, "ledger.path", str(c.tmp / "elsewhere" / "ledger.json"))
    os.makedirs(str(c.tmp / "elsewhere"))
    status_of(cfg)
    assert os.path.exists(state.path(cfg, state.CEILINGS)) and state.path(cfg, state.CEILINGS).startswith(
        str(c.tmp / "elsewhere"))


def check_ttl(c):
    """xapi not asked (status without it): a start admitted 100 s ago is still promised at the default
    600 s, no longer at 50."""
    from xsguard import ledger, state, status
    from xsguard.deadline import Deadline
    from xsguard.model.charging import HOW_CHECKED, Entry

    def promised(cfg):
        ledger.save(cfg.ledger.path, state.boot_id(cfg),
                    {c.vm: Entry(c.vm, "w", 20, state.now() - 100, None, HOW_CHECKED)})
        return [p["vm_uuid"] for p in status.read(cfg, None, Deadline(5))["promises"]]

    assert promised(c.base.with_values(c.fresh)) == [c.vm]
    assert promised(configured(c, "ledger.ttl", "50")) == []


def check_file(c):
    cfg = configured(c, "log.file", str(c.tmp / "log" / "decisions.log"))
    journal_with_notice(c, cfg._replace(log=cfg.log._replace(syslog=False, alerts=False)), "x")
    from xsguard.journal import Journal, _write_journal

    log = Journal(operation="start", vm_uuid=c.vm)
    log.info("start_admitted")
    _write_journal(cfg, log)
    with open(cfg.log.file) as handle:
        assert [json.loads(r)["event"] for r in handle] == ["start_admitted"]


def check_syslog(c):
    journal_with_notice(c, configured(c, "log.syslog", "no"), "sweep-syslog-off")
    assert alerts_sent(c)  # the notice was sent on: as an alert only
    assert not [s for s in c.api.sim.get_syslog(c.host) if "sweep-syslog-off" in s]


@contextmanager
def syslog_listener(c):
    """A datagram socket standing for /dev/log: (its path, the socket), closed on leaving."""
    path = str(c.tmp / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield path, sock
    finally:
        sock.close()


def check_syslog_socket(c):
    with syslog_listener(c) as (path, sock):
        journal_with_notice(c, configured(c, "log.syslog_socket", path, **{"log.alerts": "no"}), "sweep-socket")
        assert b"sweep-socket" in sock.recv(4096)


def check_alerts(c):
    with syslog_listener(c) as (path, sock):
        journal_with_notice(c, configured(c, "log.alerts", "no", **{"log.syslog_socket": path}), "sweep-alerts")
        assert b"sweep-alerts" in sock.recv(4096)  # the notice was sent on: to syslog only
    assert alerts_sent(c) == []


def check_alert_interval(c):
    """Two notices about one VM a moment apart: one alert at the default hour, two at 0.001 s."""
    for _ in range(2):
        journal_with_notice(c, c.base.with_values(dict(c.fresh, **{"log.syslog": "no"})), "a")
    assert len(alerts_sent(c)) == 1
    cfg = configured(c, "log.alert_interval", "0.001", **{"log.syslog": "no",
                                                          "ledger.path": str(c.tmp / "s2" / "ledger.json")})
    os.makedirs(str(c.tmp / "s2"))
    for _ in range(2):
        journal_with_notice(c, cfg, "b")
        time.sleep(0.01)
    assert len(alerts_sent(c)) == 3


def check_socket(c):
    """xsguard-rrdd's calls go to the configured socket: the simulator's xcp-rrdd, under another root, answers."""
    from xsguard import rrdd
    from xsguard.sim.rrdd import StandInRrdd

    standin = StandInRrdd(str(c.tmp / "rrdd-root")).start()
    try:
        daemon = rrdd.Daemon(configured(c, "rrdd.socket", standin.socket_path), threading.Event())
        assert daemon.rrdd.header().startswith("DATASOURCES")
    finally:
        standin.stop()


def check_period(c):
    from xsguard import rrdd

    assert rrdd.Daemon(configured(c, "rrdd.period", "1.5"), threading.Event()).period == 1.5


CHECKS = {
    "dom0.lsevtchn": check_lsevtchn, "dom0.probe_timeout": check_probe_timeout,
    "dom0.proc_interrupts": check_proc_interrupts, "dom0.kernel_log": check_kernel_log,
    "dom0.kernel_ring": check_kernel_ring, "dom0.proc_stat": check_proc_stat, "dom0.cmdline": check_cmdline,
    "dom0.boot_id": check_boot_id, "dom0.hypervisor": check_hypervisor, "dom0.sys_module": check_sys_module,
    "dom0.inventory": check_inventory, "dom0.port_limit": check_port_limit, "dom0.irq_limit": check_irq_limit,
    "policy.mode": check_mode, "policy.on_error": check_on_error, "policy.margin": check_margin,
    "policy.deadline": check_deadline, "policy.profile": check_profile, "policy.reboot": check_reboot,
    "policy.bypass": check_bypass, "need.vbd_backend": check_vbd_backend, "need.rings_per_vbd": check_rings_per_vbd,
    "need.netback_queue_cap": check_netback_queue_cap, "need.split_event_channels": check_split_event_channels,
    "need.ctrl_ring": check_ctrl_ring, "need.extra_per_vm": check_extra_per_vm, "need.vif_queues": check_vif_queues,
    "need.vbd_rings": check_vbd_rings, "xapi.url": check_url, "xapi.ca_file": check_ca_file,
    "ledger.path": check_path, "ledger.ttl": check_ttl, "log.file": check_file, "log.syslog": check_syslog,
    "log.syslog_socket": check_syslog_socket, "log.alerts": check_alerts, "log.alert_interval": check_alert_interval,
    "rrdd.socket": check_socket, "rrdd.period": check_period,
}

# an invalid value per key (None: any text is one, e.g. a file name that may be empty)
INVALID = {"probe_timeout": "0", "port_limit": "0", "irq_limit": "many", "mode": "enforse", "on_error": "maybe",
           "margin": "-1", "deadline": "3601", "profile": "xs9", "reboot": "halt", "bypass": "not-a-uuid",
           "vbd_backend": "nvme", "rings_per_vbd": "-1", "netback_queue_cap": "0", "split_event_channels": "2",
           "ctrl_ring": "sometimes", "extra_per_vm": "1.5", "vif_queues": "all", "vbd_rings": "all",
           "url": "ftp://x", "ca_file": None, "ttl": "inf", "syslog": "perhaps", "alerts": "perhaps",
           "alert_interval": "nan", "period": "-5"}

KEYS = ["%s.%s" % (s, k) for s, k, _, _, _ in config.SCHEMA]


def test_every_key_has_a_check():
    """The sweep covers the schema exactly: a key added without a check (or a check left for a key
    that is gone) fails here."""
    assert sorted(CHECKS) == sorted(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_a_valid_value_takes_effect(ctx, key):
    """The key set to a valid value other than its default: what xsguard reports or does follows it."""
    CHECKS[key](ctx)


@pytest.mark.parametrize("key", KEYS)
def test_an_invalid_value_is_an_error_naming_the_key(key):
    """The key set to an invalid value (an empty path for a path): ConfigError naming the section, the
    key and the value, from the file as from an override."""
    from xsguard.errors import ConfigError

    section, name = key.split(".")
    parser = next(p for s, k, _, p, _ in config.SCHEMA if (s, k) == (section, name))
    bad = INVALID.get(name, "" if parser is config._path else "?")
    if bad is None:
        assert parser("") == ""  # any text is a valid value
        return
    with pytest.raises(ConfigError) as raised:
        config.parse_text("[%s]\n%s = %s\n" % (section, name, bad), "/etc/xsguard/xsguard.conf")
    assert "[%s] %s" % (section, name) in raised.value.message and repr(bad) in raised.value.message
    assert name in raised.value.params
    with pytest.raises(ConfigError, match=r"\[%s\] %s" % (section, name)):
        config.defaults().with_values({key: bad})
