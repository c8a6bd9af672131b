"""xsguard-rrdd: its file format, and its figures as xapi serves them from a stand-in xcp-rrdd."""

import json
import os
import signal
import struct
import subprocess
import zlib

import pytest

from tests.pool import connect, failure, make_vm, small_host, wait_for
from xsguard.model.rrdformat import DERIVE, Datasource, encode, for_vm
from xsguard.rrdd import Rrdd
from xsguard.sim.rrdd import Rejected, read_file
from xsguard.sim.server import Simulator

INTERVAL = 0.2  # the stand-in xcp-rrdd reads every 0.2 s instead of 5 s
MARGIN = 8
LIMIT = 300
VM_A = "6f1c2d3e-0000-4000-8000-00000000000a"
VM_B = "6f1c2d3e-0000-4000-8000-00000000000b"


@pytest.fixture
def rsim():
    """A simulated pool whose hosts run xcp-rrdd and, from its unit file, xsguard-rrdd."""
    with Simulator(rrdd=True, rrdd_interval=INTERVAL) as running:
        yield running


@pytest.fixture
def rapi(rsim):
    session = connect(rsim.url)
    yield session.xenapi
    session.xenapi.session.logout()


def shown(api, host):
    """Every host datasource xapi serves, by name."""
    return {d["name_label"]: d["value"] for d in api.host.get_data_sources(host)}


def dom0_of(api, host):
    """The simulated dom0's own figures (not xsguard's)."""
    d = api.sim.get_dom0(host)
    return {"ports_used": int(d["ports_used"]), "irqs_used": int(d["irqs_used"]),
            "irq_limit": int(d["irq_limit"]), "by_domid": {int(k): int(v) for k, v in d["by_remote_domain"].items()}}


def journal(api, host):
    """What xsguard-rrdd wrote to its journal on the host."""
    with open(os.path.join(api.sim.get_host_root(host), "var", "log", "xsguard-rrdd.journal")) as handle:
        return handle.read()


def settled(api, host, promised=0):
    """Wait until xapi's figures are dom0's as it stands now; returns dom0's figures."""
    def matches():
        d = dom0_of(api, host)
        try:
            return d if (api.host.query_data_source(host, "xsguard_ports_used") == d["ports_used"]
                         and api.host.query_data_source(host, "xsguard_promised") == promised) else None
        except Exception:  # noqa: BLE001 - not read yet
            return None

    return wait_for(matches)


def test_file_layout_as_xcp_rrdd_reads_it():
    """Header, both crc32s, the count, a big-endian double timestamp, big-endian int64 values, then
    the metadata JSON in value order, a per-VM name once per VM."""
    sources = [Datasource("xsguard_ports_used", 142, "used", "ports"),
               Datasource("xsguard_refusals", 3, "refused", "refusals", DERIVE),
               Datasource("xsguard_ports_held", 10, "held", "ports", owner=for_vm(VM_A)),
               Datasource("xsguard_ports_held", 7, "held", "ports", owner=for_vm(VM_B))]
    raw = encode(1.5, sources)
    assert raw[:11] == b"DATASOURCES"
    data_crc, meta_crc, count = struct.unpack(">III", raw[11:23])
    assert count == 4
    assert raw[23:31] == bytes.fromhex("3ff8000000000000")  # 1.5 as a big-endian IEEE 754 double
    values = raw[31:63]
    assert values == bytes.fromhex("000000000000008e" "0000000000000003" "000000000000000a" "0000000000000007")
    assert data_crc == zlib.crc32(raw[23:63])
    (meta_len,) = struct.unpack(">I", raw[63:67])
    meta = raw[67:]
    assert meta_len == len(meta) and meta_crc == zlib.crc32(meta)
    pairs = json.loads(meta.decode(), object_pairs_hook=list)[0][1]
    assert [name for name, _ in pairs] == ["xsguard_ports_used", "xsguard_refusals", "xsguard_ports_held",
                                           "xsguard_ports_held"]
    assert dict(pairs[1][1]) == {"description": "refused", "owner": "host", "value_type": "int64",
                                 "type": "derive", "default": "true", "units": "refusals", "min": "0.0",
                                 "max": "inf"}
    assert dict(pairs[3][1])["owner"] == "vm " + VM_B


def corrupt(raw, how):
    """A copy of a good file broken one way; checksums recomputed where the breakage is elsewhere."""
    values_end = 23 + 8 + 8 * struct.unpack(">I", raw[19:23])[0]  # header, crcs and count, timestamp, values
    meta = json.loads(raw[values_end + 4:].decode())
    if how == "header":
        return b"DATASOURCEZ" + raw[11:]
    if how == "data checksum":
        return raw[:values_end - 1] + bytes([raw[values_end - 1] ^ 1]) + raw[values_end:]
    if how == "value_type":
        meta["datasources"]["a"]["value_type"] = "int32"
    if how == "count":
        del meta["datasources"]["b"]
    if how == "type":
        meta["datasources"]["a"]["type"] = "counter"
    text = json.dumps(meta).encode()
    return (raw[:15] + struct.pack(">I", zlib.crc32(text)) + raw[19:values_end]
            + struct.pack(">I", len(text)) + text)


@pytest.mark.parametrize("how, why", [
    ("header", "header is"),
    ("data checksum", "data checksum does not match"),
    ("value_type", "value_type 'int32' is neither int64 nor float"),
    ("type", "type 'counter' is not one of"),
])
def test_reader_refuses_a_broken_file(how, why):
    """The stand-in's reader, written apart from xsguard's writer, refuses each breakage."""
    raw = encode(1.0, [Datasource("a", 1, "", ""), Datasource("b", 2, "", "")])
    assert [s.raw for s in read_file(raw).sources] == [1.0, 2.0]
    with pytest.raises(Rejected, match=why):
        read_file(corrupt(raw, how))


def test_every_datasource_is_dom0s_own_figure(rapi):
    """After starts, each host datasource and each VM's ports held are the simulated dom0's figures."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    vms = [make_vm(rapi, "web-%d" % n, vcpus=2, hvm=True, affinity=host) for n in range(2)]
    for vm in vms:
        rapi.VM.start(vm, False, False)
    d = settled(rapi, host)
    assert shown(rapi, host) == {
        "xsguard_ports_used": d["ports_used"],
        "xsguard_ports_free": LIMIT - MARGIN - d["ports_used"],
        "xsguard_port_limit": LIMIT,
        "xsguard_irqs_used": d["irqs_used"],
        "xsguard_irqs_free": d["irq_limit"] - MARGIN - d["irqs_used"],
        "xsguard_irq_limit": d["irq_limit"],
        "xsguard_promised": 0,
        "xsguard_refusals": 0,
    }
    for vm in vms:
        domid = int(rapi.VM.get_domid(vm))
        assert rapi.VM.query_data_source(vm, "xsguard_ports_held") == d["by_domid"][domid]
        assert [s["name_label"] for s in rapi.VM.get_data_sources(vm)] == ["xsguard_ports_held"]


def test_promised_until_the_drivers_connect(rapi):
    """A VM admitted whose drivers have not connected is promised what its disk and NIC will bind."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    vm = make_vm(rapi, "slow", vcpus=1, disks=1, nics=1, affinity=host)
    rapi.sim.set_guest(vm, {"connect_delay": "60"})
    rapi.VM.start(vm, False, False)
    owed = 1 + 2  # the simulated guest binds 1 disk ring and 1 netback queue x 2 (tx, rx) when it connects
    d = settled(rapi, host, promised=owed)
    assert rapi.host.query_data_source(host, "xsguard_ports_free") == LIMIT - MARGIN - d["ports_used"] - owed


def test_a_refusal_shows_in_refusals(rapi):
    """xsguard_refusals, a derive, graphs a refused start as a rate above zero."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    settled(rapi, host)
    assert rapi.host.query_data_source(host, "xsguard_refusals") == 0
    big = make_vm(rapi, "big", vcpus=128, hvm=True, firmware="uefi", disks=8, nics=4, affinity=host)
    assert failure(rapi.VM.start, big, False, False)[0] == "XAPI_HOOK_FAILED"
    wait_for(lambda: rapi.host.query_data_source(host, "xsguard_refusals") > 0)
    assert wait_for(lambda: rapi.host.query_data_source(host, "xsguard_refusals") == 0 or None) is True


def test_shutdown_releases_and_drops_the_vm(rapi):
    """After a shutdown the host's figures fall to dom0's and the halted VM has no datasource."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    keep, stop = [make_vm(rapi, name, affinity=host) for name in ("keep", "stop")]
    for vm in (keep, stop):
        rapi.VM.start(vm, False, False)
    before = settled(rapi, host)
    rapi.VM.hard_shutdown(stop)
    after = settled(rapi, host)
    assert after["ports_used"] < before["ports_used"]
    assert rapi.host.query_data_source(host, "xsguard_ports_free") == LIMIT - MARGIN - after["ports_used"]
    assert failure(rapi.VM.query_data_source, stop, "xsguard_ports_held") == [
        "INTERNAL_ERROR", 'Rrd_interface.Rrdd_error(Datasource_missing("VM: %s"))' % rapi.VM.get_uuid(stop)]
    assert rapi.VM.get_data_sources(stop) == []
    domid = int(rapi.VM.get_domid(keep))
    wait_for(lambda: rapi.VM.query_data_source(keep, "xsguard_ports_held") == after["by_domid"][domid])


def test_xcp_rrdd_restart_is_survived(rapi, rsim):
    """xcp-rrdd forgets its plugins when it restarts; xsguard-rrdd registers again and figures follow."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    settled(rapi, host)
    rsim.pool.rrdds[host].restart()  # registrations cleared: the one found below was made since
    vm = make_vm(rapi, "after", affinity=host)
    rapi.VM.start(vm, False, False)
    settled(rapi, host)
    assert "xsguard" in rsim.pool.rrdds[host].registered
    assert rsim.pool.services[host].started == 1


def test_xcp_rrdd_down_for_a_while_is_waited_for(rapi, rsim):
    """While xcp-rrdd is down xsguard-rrdd retries, says so, and registers once it is back."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    settled(rapi, host)
    standin = rsim.pool.rrdds[host]
    standin.stop()
    wait_for(lambda: "xcp-rrdd not reached" in journal(rapi, host))
    with standin.lock:
        standin.registered.clear()
    standin.start()
    rapi.VM.start(make_vm(rapi, "after", affinity=host), False, False)
    settled(rapi, host)
    assert rsim.pool.services[host].started == 1


def test_killed_daemon_is_restarted_by_its_unit(rapi, rsim):
    """Killed, xsguard-rrdd is started again (Restart=on-failure) and its figures follow dom0."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    settled(rapi, host)
    service = rsim.pool.services[host]
    first = service.pid
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: service.started == 2)
    assert service.pid != first
    vm = make_vm(rapi, "after", affinity=host)
    rapi.VM.start(vm, False, False)
    settled(rapi, host)


def test_stopped_daemon_deregisters_and_stays_stopped(rapi, rsim):
    """SIGTERM (systemctl stop): it deregisters, exits 0, and on-failure does not restart it."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    settled(rapi, host)
    service = rsim.pool.services[host]
    service.stop()
    assert service.proc.returncode == 0
    assert "xsguard" not in rsim.pool.rrdds[host].registered
    assert service.started == 1


def test_a_broken_plugin_file_is_refused_by_the_stand_in(rapi, rsim):
    """A registered file with a bad checksum is refused at the reading and none of its values shows."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    standin = rsim.pool.rrdds[host]
    client = Rrdd(standin.socket_path)
    path = client.call("Plugin.get_path", {"uid": "broken"})
    raw = encode(1.0, [Datasource("broken_gauge", 5, "", "")])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(corrupt(raw, "data checksum"))
    client.call("Plugin.register", {"uid": "broken", "frequency": "Five_Seconds"})
    wait_for(lambda: any(uid == "broken" for uid, _ in standin.rejected))
    assert [why for uid, why in standin.rejected if uid == "broken"][0] == \
        "data checksum does not match the timestamp and values"
    assert "broken_gauge" not in shown(rapi, host)


@pytest.mark.skipif(subprocess.call(["sh", "-c", "command -v pyenv"], stdout=subprocess.DEVNULL) != 0,
                    reason="pyenv (for Python 3.6.15) is not installed")
def test_daemon_runs_on_dom0s_python_36(tmp_path):
    """xsguard-rrdd under Python 3.6 serves the same figures through xapi."""
    prefix = subprocess.run(["pyenv", "prefix", "3.6.15"], stdout=subprocess.PIPE).stdout.decode().strip()
    python = os.path.join(prefix, "bin", "python3.6")
    if not os.path.exists(python):
        pytest.skip("Python 3.6.15 is not installed")
    import XenAPI

    site = tmp_path / "site"
    site.mkdir()
    os.symlink(os.path.dirname(XenAPI.__file__), str(site / "XenAPI"))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with Simulator(rrdd=True, rrdd_interval=INTERVAL, install_xsguard=False) as sim:
        api = connect(sim.url).xenapi
        host = small_host(api, port_limit=LIMIT, margin=MARGIN)
        config = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
        env = {"PATH": "/usr/bin:/bin", "XSGUARD_CONFIG": config, "PYTHONPATH": "%s:%s" % (site, repo)}
        proc = subprocess.Popen([python, os.path.join(repo, "packaging", "xsguard-rrdd")], env=env,
                                stderr=subprocess.PIPE)
        try:
            d = settled(api, host)
            assert api.host.query_data_source(host, "xsguard_ports_free") == LIMIT - MARGIN - d["ports_used"]
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()


def test_xapi_is_not_asked_while_nothing_changes(rapi, rsim):
    """Once the VMs on the host are known, readings that find the same domains make no xapi call."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    for name in ("a", "b"):
        rapi.VM.start(make_vm(rapi, name, affinity=host), False, False)
    settled(rapi, host)
    standin = rsim.pool.rrdds[host]
    asked = len([m for o, m in rsim.pool.calls if o == "xsguard-rrdd"])
    readings = standin.readings
    wait_for(lambda: standin.readings >= readings + 5)
    assert [m for o, m in rsim.pool.calls if o == "xsguard-rrdd"][asked:] == []
    rapi.VM.start(make_vm(rapi, "c", affinity=host), False, False)
    settled(rapi, host)
    assert "VM.get_all_records_where" in [m for o, m in rsim.pool.calls if o == "xsguard-rrdd"][asked:]


def test_without_xapi_dom0_figures_still_go_out(rapi, rsim):
    """xapi unreachable: dom0's figures still come, the VM in the ledger is charged its whole need,
    no VM datasource is written, and the journal says why."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    vm = make_vm(rapi, "a", affinity=host)
    rapi.VM.start(vm, False, False)  # its entry stays in the ledger until the next admission
    d = settled(rapi, host)
    root = rapi.sim.get_host_root(host)
    rapi.sim.set_xsguard_config(host, {"xapi.url": "unix://%s/nothing-listens-here" % root})
    service = rsim.pool.services[host]
    os.kill(service.pid, signal.SIGKILL)  # started again, it reads the new config
    wait_for(lambda: service.started == 2)
    whole_need = d["by_domid"][int(rapi.VM.get_domid(vm))]  # its drivers connected: it holds all it binds
    settled(rapi, host, promised=whole_need)
    assert rapi.host.query_data_source(host, "xsguard_ports_free") == LIMIT - MARGIN - d["ports_used"] - whole_need
    assert rapi.VM.get_data_sources(vm) == []
    assert journal(rapi, host).count("xapi not consulted (xapi is not answering on unix://") == 1
