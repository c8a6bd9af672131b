"""xsguard-rrdd: its file format, and its figures as xapi serves them from a stand-in xcp-rrdd."""

import hashlib
import json
import math
import os
import signal
import socketserver
import struct
import subprocess
import sys
import threading
import xmlrpc.client
import zlib

import pytest

from tests.pool import connect, failure, make_vm, small_host, wait_for
from xsguard.config import load as load_config
from xsguard.errors import XapiFailure, XapiUnreachable
from xsguard.model.rrdformat import DERIVE, HOST, Datasource, encode, for_vm
from xsguard.rrdd import (
    FLOOR,
    HOST_SOURCES,
    MAX_VMS,
    Daemon,
    Rrdd,
    RrddUnavailable,
    XapiView,
    file_size,
    wait_for_reading,
)
from xsguard.sim.rrdd import ReadFailed, StandInRrdd, read_file
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
    with pytest.raises(ReadFailed, match=why):
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
    assert rsim.pool.services[host].starts == 1


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
    assert rsim.pool.services[host].starts == 1


def test_killed_daemon_is_restarted_by_its_unit(rapi, rsim):
    """Killed, xsguard-rrdd is started again (Restart=on-failure) and its figures follow dom0."""
    host = small_host(rapi, port_limit=LIMIT, margin=MARGIN)
    settled(rapi, host)
    service = rsim.pool.services[host]
    first = service.pid
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: service.starts == 2)
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
    assert service.starts == 1


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
    asked = len([m for o, m, _ in rsim.pool.calls if o == "xsguard-rrdd"])
    readings = standin.readings
    wait_for(lambda: standin.readings >= readings + 5)
    assert [m for o, m, _ in rsim.pool.calls if o == "xsguard-rrdd"][asked:] == []
    rapi.VM.start(make_vm(rapi, "c", affinity=host), False, False)
    settled(rapi, host)
    assert "VM.get_all_records_where" in [m for o, m, _ in rsim.pool.calls if o == "xsguard-rrdd"][asked:]


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
    wait_for(lambda: service.starts == 2)
    whole_need = d["by_domid"][int(rapi.VM.get_domid(vm))]  # its drivers connected: it holds all it binds
    settled(rapi, host, promised=whole_need)
    assert rapi.host.query_data_source(host, "xsguard_ports_free") == LIMIT - MARGIN - d["ports_used"] - whole_need
    assert rapi.VM.get_data_sources(vm) == []
    assert journal(rapi, host).count("xapi not consulted (xapi is not answering on unix://") == 1


# The stand-in xcp-rrdd itself: a plugin that keeps its rules, and one that breaks each.


@pytest.fixture
def standin(tmp_path):
    """A stand-in xcp-rrdd on its own root whose readings the test takes (read_all)."""
    running = StandInRrdd(str(tmp_path), 5.0, read_by_itself=False).start()
    yield running
    running.stop()


def payload(n, vms=0, extra=0):
    """A plugin file's content for reading ``n``: a host gauge worth n, a VM gauge per VM."""
    sources = [Datasource("g", n, "a gauge", "things")]
    sources += [Datasource("held", n + v, "per VM", "ports", owner=for_vm("%036d" % v)) for v in range(vms)]
    sources += [Datasource("extra%d" % e, e, "x" * 200, "things") for e in range(extra)]
    return encode(1000.0 + n, sources)


def create_whole(standin, uid, size, data):
    """What the rules ask: the file written whole at its final size under .tmp, renamed into place."""
    path = os.path.join(standin.metrics, uid)
    with open(path + ".tmp", "wb") as handle:
        handle.write(data.ljust(size, b"\0"))
    os.rename(path + ".tmp", path)
    return path


def write_in_place(path, data):
    with open(path, "r+b") as handle:
        handle.write(data)


def test_standin_reads_a_plugin_that_keeps_the_rules(standin):
    """Created whole at a padded size, registered as V2, written in place before each reading, its
    set of datasources growing within the padding: every reading takes it, with each VM's value under
    its owner although the name is shared."""
    client = Rrdd(standin.socket_path)
    assert client.call("Plugin.get_header", None) == "DATASOURCES\n"
    path = client.call("Plugin.get_path", {"uid": "good"})
    assert path == os.path.join(standin.metrics, "good")
    create_whole(standin, "good", 8192, payload(0))
    assert client.call("Plugin.Local.register", {"uid": "good", "info": "Five_Seconds", "protocol": "V2"}) > 0
    for n in range(1, 6):
        write_in_place(path, payload(n, vms=n))
        standin.read_all()
    assert standin.outcomes["good"] == ["ok"] * 5
    assert standin.registered["good"].protocol == "V2"
    assert standin.shown(HOST)["g"].value == 5
    assert [standin.shown(for_vm("%036d" % v))["held"].value for v in range(5)] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("method, params, error", [
    ("Plugin.get_header", (), 'Idl.MarshalError("Incorrect number of arguments")'),
    ("Plugin.get_header", ({},), "Idl.MarshalError(\"Expected unit, got '{}'\")"),
    ("Plugin.get_path", ("good",), "Idl.MarshalError(\"Marshalling error: Expecting dict as first argument when"
                                   " named parameters exist\")"),
    ("Plugin.Local.register", ({"uid": "good", "info": "Five_Seconds"},),
     "Idl.MarshalError(\"Expecting named argument 'protocol'\")"),
    ("Plugin.Local.register", ({"uid": "good", "info": "Five_Seconds", "protocol": "V3"},),
     "Idl.MarshalError(\"protocol: 'V3' is not one of V1, V2\")"),
])
def test_standin_refuses_a_call_without_its_declared_parameters(standin, method, params, error):
    """A call whose parameters are not the declared ones is answered Rrdd_internal_error."""
    assert Rrdd(standin.socket_path).proxy.__getattr__(method)(*params) == {
        "Status": "Failure", "ErrorDescription": ["Rrdd_internal_error", error]}


def test_standin_answers_401_to_an_unknown_method(standin):
    """A method xcp-rrdd does not have is refused with HTTP 401, as its XML-RPC handler does."""
    with pytest.raises(xmlrpc.client.ProtocolError) as caught:
        Rrdd(standin.socket_path).proxy.Plugin.get_headers(None)
    assert caught.value.errcode == 401


def test_standin_refuses_to_register_a_file_not_there(standin):
    """Registering opens the file: before it exists, the call fails and nothing is registered."""
    answer = Rrdd(standin.socket_path).proxy.Plugin.Local.register(
        {"uid": "early", "info": "Five_Seconds", "protocol": "V2"})
    assert isinstance(answer, dict) and answer["Status"] == "Failure"
    assert answer["ErrorDescription"] == ["Rrdd_internal_error", 'Unix.Unix_error(Unix.ENOENT, "open", "%s")'
                                          % os.path.join(standin.metrics, "early")]
    assert "early" not in standin.registered


def test_standin_reads_a_legacy_registration_as_v1(standin):
    """Plugin.register registers protocol V1: a v2 file so registered fails every reading it takes."""
    standin.pause_discovery()  # the file reaches the legacy call before discovery (the one way it can)
    path = create_whole(standin, "legacy", 4096, payload(0))
    client = Rrdd(standin.socket_path)
    client.call("Plugin.register", {"uid": "legacy", "frequency": "Five_Seconds"})
    standin.resume_discovery()  # discovery's scan registers it as V2, but the first registration won
    assert standin.registered["legacy"].protocol == "V1"
    write_in_place(path, payload(1))
    standin.read_all()
    assert standin.outcomes["legacy"] == ["Invalid_header_string"]
    assert "read as protocol V1" in standin.rejected[-1][1]


def test_standin_registers_v1_files_and_reads_them(standin):
    """A protocol v1 file (header with its newline, hex length, MD5, JSON with values) registered with
    the legacy call is read: the V1 rule refuses v2 files, not v1 ones."""
    standin.pause_discovery()
    body = json.dumps({"timestamp": 1000.0, "datasources": {"v1g": {"value": 7, "value_type": "int64",
                                                                    "type": "gauge", "default": "true"}}})
    raw = b"DATASOURCES\n%08x\n%s\n%s" % (len(body), hashlib.md5(body.encode()).hexdigest().encode(),
                                           body.encode())
    create_whole(standin, "v1", 4096, raw)
    Rrdd(standin.socket_path).call("Plugin.register", {"uid": "v1", "frequency": "Five_Seconds"})
    standin.read_all()
    assert standin.outcomes["v1"] == ["ok"]
    assert standin.shown(HOST)["v1g"].value == 7


def test_standin_discovers_a_new_file_as_v2_and_forgets_a_removed_one(standin):
    """A file renamed into the directory is registered as V2 with no call; a removed one deregistered;
    a restarted xcp-rrdd has forgotten its registrations and registers the files it finds."""
    path = create_whole(standin, "found", 4096, payload(0))
    standin.read_all()
    assert standin.registered["found"].protocol == "V2"
    assert standin.outcomes["found"] == ["ok"]
    standin.restart()
    assert list(standin.registered) == ["found"]
    os.unlink(path)
    standin.read_all()
    assert standin.registered == {}


def test_standin_mapping_never_follows_growth(standin):
    """A file grown after registration is read at its first size: a payload past it fails."""
    path = create_whole(standin, "grows", 4096, payload(0))
    standin.read_all()
    write_in_place(path, payload(1, extra=40))  # 40 x 200-byte descriptions: past the 4096 bytes mapped
    standin.read_all()
    assert standin.outcomes["grows"] == ["ok", "Read_error"]


def test_standin_mapping_never_follows_a_rename(standin):
    """A new file renamed over a registered one is never read: the old one, unchanged, is no update."""
    create_whole(standin, "renamed", 4096, payload(0))
    standin.read_all()
    create_whole(standin, "renamed", 4096, payload(1))
    standin.read_all()
    assert standin.outcomes["renamed"] == ["ok", "No_update"]


def test_standin_skips_a_failing_plugin_2_to_256_readings(standin):
    """An unchanged file doubles the skip count at each failed read, up to 256 (255 readings skipped
    between two tries); a good read resets it."""
    path = create_whole(standin, "idle", 4096, payload(0))
    for _ in range(1024):
        standin.read_all()
    got = standin.outcomes["idle"]
    assert got[:8] == ["ok", "No_update", "skipped", "No_update"] + ["skipped"] * 3 + ["No_update"]
    tries = [i for i, o in enumerate(got) if o == "No_update"]
    assert [b - a - 1 for a, b in zip(tries, tries[1:])] == [1, 3, 7, 15, 31, 63, 127, 255, 255, 255]
    write_in_place(path, payload(1))
    standin.read_all()
    while standin.outcomes["idle"][-1] == "skipped":
        standin.read_all()
    write_in_place(path, payload(2))
    standin.read_all()
    assert standin.outcomes["idle"][-2:] == ["ok", "ok"]


def test_standin_next_reading_is_negative_while_late(standin):
    """next_reading counts down to the reading, is negative while xcp-rrdd is late, -1 unregistered."""
    create_whole(standin, "timed", 4096, payload(0))
    client = Rrdd(standin.socket_path)
    assert 0 < client.register("timed") <= 5.0
    standin.late = 1.5
    assert client.call("Plugin.Local.next_reading", {"uid": "timed"}) == -1.5
    assert client.call("Plugin.Local.next_reading", {"uid": "other"}) == -1.0


# xsguard-rrdd against the stand-in, on a clock the test moves: each reading taken as the daemon's
# sleep passes it.


@pytest.fixture
def bare():
    """A simulated pool whose hosts run no xcp-rrdd of their own (the test gives them one)."""
    with Simulator() as running:
        yield running


class Harness:
    """xsguard-rrdd run in the test's thread against a stand-in xcp-rrdd on one host, both on a
    clock that only the daemon's sleeps move; ``at_reading(n)`` runs right after reading ``n``."""

    def __init__(self, sim, api, host, max_vms=MAX_VMS):
        self.api = api
        self.host = host
        self.now = 1000.0
        self.root = api.sim.get_host_root(host)
        self.standin = StandInRrdd(self.root, 5.0, clock=lambda: self.now, read_by_itself=False).start()
        sim.pool.rrdds[host] = self.standin
        self.config = os.path.join(self.root, "etc", "xsguard", "xsguard.conf")
        api.sim.set_xsguard_config(host, {"rrdd.socket": self.standin.socket_path, "rrdd.period": "5"})
        self.stop = threading.Event()
        self.daemon = Daemon(load_config(self.config), self.stop, clock=lambda: self.now, sleep=self.sleep,
                             max_vms=max_vms)
        self.readings = 0
        self.sleeps = 0
        self.at_reading = lambda n: None

    def sleep(self, seconds):
        self.sleeps += 1
        assert self.sleeps < 10 * (self.readings + 10), "the daemon loops without waiting for readings"
        assert seconds >= FLOOR
        end = self.now + seconds
        standin = self.standin
        while not self.stop.is_set():
            at = standin.epoch + (math.floor((self.now - standin.epoch) / standin.interval) + 1) * standin.interval
            if at > end:
                break
            self.now = at
            standin.read_all()
            self.readings += 1
            self.at_reading(self.readings)
        self.now = end
        return self.stop.is_set()

    def run(self, at_reading, readings):
        def step(n):
            at_reading(n)
            if n >= readings:
                self.stop.set()

        self.at_reading = step
        assert self.daemon.run() == 0

    def status(self):
        proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", self.config, "status", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.returncode in (0, 1), proc.stderr.decode()
        return json.loads(proc.stdout.decode())


def quiet(h):
    """Wait until the VMs started have connected their drivers (on timers of their own): nothing
    promised any more, as `xsguard status` says."""
    wait_for(lambda: h.status()["promised"] == 0)


def running_domids(api, vms):
    return {api.VM.get_uuid(vm): int(api.VM.get_domid(vm)) for vm in vms
            if api.VM.get_power_state(vm) == "Running"}


def test_every_reading_succeeds_while_vms_come_and_go(bare):
    """As VMs start and stop (past the VMs its file was sized for), xcp-rrdd restarts and the file is
    removed, every reading takes xsguard-rrdd's file, registered as V2, and each figure, host and per
    VM, is `xsguard status --json`'s at that reading."""
    api = connect(bare.url).xenapi
    host = small_host(api, port_limit=LIMIT, margin=MARGIN)
    vms = [make_vm(api, "vm-%d" % n, affinity=host) for n in range(11)]
    h = Harness(bare, api, host, max_vms=2)  # 4096 bytes: room for 8 VMs
    path = os.path.join(h.standin.metrics, "xsguard")
    plan = {
        1: lambda: api.VM.start(vms[0], False, False),
        2: lambda: api.VM.start(vms[1], False, False),
        3: lambda: [api.VM.start(vm, False, False) for vm in vms[2:10]],  # 10 VMs outgrow the file
        4: lambda: api.VM.hard_shutdown(vms[1]),
        5: h.standin.restart,  # registrations forgotten
        6: lambda: api.VM.start(vms[10], False, False),
        7: lambda: os.unlink(path),
        8: lambda: [api.VM.hard_shutdown(vm) for vm in (vms[0], vms[2])],
    }
    compared = []

    def at_reading(n):
        assert h.standin.registered["xsguard"].protocol == "V2"
        status, held = h.status(), running_domids(api, vms)
        shown = h.standin.shown(HOST)
        assert {name: shown[name].value for name, key, _, _ in HOST_SOURCES} == \
            {name: status[key] for name, key, _, _ in HOST_SOURCES}
        assert {uuid: h.standin.shown(for_vm(uuid))["xsguard_ports_held"].value for uuid in held} == \
            {uuid: status["by_remote_domain"][str(domid)]["ports"] for uuid, domid in held.items()}
        compared.append(len(held))
        if n in plan:
            plan[n]()
            quiet(h)

    h.run(at_reading, readings=10)
    assert h.standin.outcomes["xsguard"] == ["ok"] * 10
    assert compared == [0, 1, 2, 10, 9, 9, 10, 10, 8, 8]
    assert h.daemon.file is not None
    assert (h.daemon.vms, h.daemon.file.size) == (20, file_size(20))  # grown once, for twice the 10 VMs
    assert not os.path.exists(path)  # removed when the daemon stopped
    assert "xsguard" not in h.standin.registered


def test_a_late_xcp_rrdd_gets_one_file_a_reading(bare):
    """xcp-rrdd behind its cycle answers a negative next reading: the daemon still waits at least
    FLOOR, writing once per reading (never in a loop), and every reading takes its file."""
    api = connect(bare.url).xenapi
    host = small_host(api, port_limit=LIMIT, margin=MARGIN)
    h = Harness(bare, api, host)
    h.standin.late = 3.0
    h.run(lambda n: None, readings=12)
    assert h.standin.outcomes["xsguard"] == ["ok"] * 12
    assert h.standin.calls.count("Plugin.Local.register") <= 13


@pytest.mark.parametrize("next_reading, expected", [
    (5.0, 3.0),  # just after a reading: LEAD (2 s) before the next
    (1.95, 4.95),  # just written: the reading after this one
    (2.05, 5.05),  # under FLOOR: too close to write for this reading, so for the next
    (-0.5, 2.5),  # late: the period's remainder
    (-3.0, 5.0),  # late by exactly LEAD: a whole period, never 0
    (-1000.0, 3.0),  # however late: within one period
])
def test_wait_for_reading_has_a_floor(next_reading, expected):
    """The wait before writing is LEAD before the reading, never under FLOOR, however late xcp-rrdd is."""
    assert wait_for_reading(next_reading, 2.0, 5.0) == pytest.approx(expected)


class OddServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An xcp-rrdd socket that answers every request with one fixed HTTP response."""

    daemon_threads = True

    def __init__(self, path, status, body):
        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                length = 0
                line = self.rfile.readline().strip()
                while line:
                    name, _, value = line.partition(b":")
                    length = int(value) if name.lower() == b"content-length" else length
                    line = self.rfile.readline().strip()
                self.rfile.read(length)  # the whole request read: closing on unread data would reset it
                self.wfile.write(b"HTTP/1.0 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))

        super().__init__(path, Handler)


def response(value):
    return xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()


@pytest.mark.parametrize("status, body", [
    (200, b"<not xml"),
    (200, response("soon")),
    (200, response({"Status": "Success", "Value": "soon"})),
    (200, response({"Status": "Success", "Value": True})),
    (200, response({"Status": "Success", "Value": float("nan")})),
    (200, response({"Status": "Success"})),
    (200, response({"Status": "Failure", "ErrorDescription": ["Rrdd_internal_error", "x"]})),
    (401, b"Go away"),
    (500, b""),
])
def test_an_odd_answer_is_xcp_rrdd_unavailable(tmp_path, status, body):
    """Whatever xcp-rrdd answers that its interface does not declare is RrddUnavailable, never a crash."""
    path = str(tmp_path / "xcp-rrdd")
    server = OddServer(path, status, body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RrddUnavailable):
            Rrdd(path).register("xsguard")
    finally:
        server.shutdown()
        server.server_close()


def test_the_daemon_waits_out_an_odd_xcp_rrdd(bare, tmp_path, capsys):
    """Against a socket answering nonsense the daemon says so once in the journal and keeps trying."""
    api = connect(bare.url).xenapi
    host = small_host(api, port_limit=LIMIT, margin=MARGIN)
    path = str(tmp_path / "xcp-rrdd")
    server = OddServer(path, 200, response({"Status": "Success", "Value": 42}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api.sim.set_xsguard_config(host, {"rrdd.socket": path})
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        return len(waits) >= 6

    try:
        cfg = load_config(os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf"))
        assert Daemon(cfg, threading.Event(), sleep=sleep).run() == 0
    finally:
        server.shutdown()
        server.server_close()
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    err = capsys.readouterr().err
    assert err.count("xcp-rrdd not reached (Plugin.get_header answered 42: not xcp-rrdd's plugin header)") == 1
    assert "Traceback" not in err


class FakeXapi:
    """A xapi session whose calls fail as the test says; counts logins and logouts."""

    logins = 0
    logouts = 0
    login_error = None
    call_error = None

    def __init__(self, url, deadline):
        pass

    def __enter__(self):
        FakeXapi.logins += 1
        if FakeXapi.login_error is not None:
            raise FakeXapi.login_error
        return self

    def __exit__(self, *exc_info):
        FakeXapi.logouts += 1

    def host_by_uuid(self, uuid):
        return "OpaqueRef:host", {}

    asked = 0

    def vms_on_host(self, host_ref):
        if FakeXapi.call_error is not None:
            raise FakeXapi.call_error
        FakeXapi.asked += 1
        return {}


def test_the_vms_on_the_host_are_asked_again_every_minute_whatever_dom0_shows(monkeypatch):
    """The same domains reading after reading: xapi is asked about the host's VMs once, then again
    only once REASK_AFTER (60 s) has passed, so that a VM arriving here that no decision has seen
    shows in the graphs within a minute; new domains are asked about at once."""
    monkeypatch.setattr("xsguard.rrdd.DaemonXapi", FakeXapi)
    monkeypatch.setattr("xsguard.rrdd.probes.this_host_uuid", lambda cfg: "host-uuid")
    for counter in ("asked", "logins", "logouts"):
        monkeypatch.setattr(FakeXapi, counter, 0)
    now = [1000.0]
    view = XapiView(load_config(None), clock=lambda: now[0])
    asked = []
    for _ in range(13):  # a reading every 5 s, the same domains: 0 s, 5 s ... 60 s
        view.refresh(frozenset({1, 2}))
        asked.append(FakeXapi.asked)
        now[0] += 5
    assert asked == [1] * 12 + [2]
    view.refresh(frozenset({1, 2, 3}))
    assert FakeXapi.asked == 3
    view.drop()


def test_one_xapi_session_for_the_daemons_life(monkeypatch):
    """A slow xapi keeps the session (no login per reading); SESSION_INVALID that XenAPI could not
    mend brings one login; a login xapi did not answer is tried again after 5 s, then 10, 20 ..."""
    monkeypatch.setattr("xsguard.rrdd.DaemonXapi", FakeXapi)
    monkeypatch.setattr("xsguard.rrdd.probes.this_host_uuid", lambda cfg: "host-uuid")
    monkeypatch.setattr(FakeXapi, "logins", 0)
    now = [0.0]
    view = XapiView(load_config(None), clock=lambda: now[0])

    def reading(domids):
        try:
            view.refresh(frozenset(domids))
        except (XapiFailure, XapiUnreachable) as exc:
            view.failed(exc)
        now[0] += 5

    monkeypatch.setattr(FakeXapi, "call_error", XapiUnreachable("xapi is not answering: timed out", "local"))
    for n in range(5):
        reading({n})
    assert (FakeXapi.logins, FakeXapi.logouts) == (1, 0)
    monkeypatch.setattr(FakeXapi, "call_error", XapiFailure("xapi refused SESSION_INVALID", "SESSION_INVALID", "x"))
    reading({9})
    monkeypatch.setattr(FakeXapi, "call_error", None)
    reading({9})
    assert (FakeXapi.logins, FakeXapi.logouts) == (2, 0)
    view.failed(XapiFailure("xapi refused SESSION_INVALID", "SESSION_INVALID", "x"))
    monkeypatch.setattr(FakeXapi, "login_error", XapiUnreachable("xapi is not answering: timed out", "local"))
    tried = []
    for _ in range(6):  # a reading every 5 s: a login fails, none for 5 s; fails again, none for 10 s, then 20
        before = FakeXapi.logins
        reading({1})
        tried.append(FakeXapi.logins - before)
    assert tried == [1, 1, 0, 1, 0, 0]
    view.drop()


def test_simulate_serves_graphs_by_default():
    """`xsguard simulate` runs xcp-rrdd and xsguard-rrdd on each host: host.get_data_sources lists
    xsguard's datasources, host.query_data_source and VM.query_data_source answer dom0's figures."""
    proc = subprocess.Popen([sys.executable, "-m", "xsguard", "simulate"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        url = proc.stdout.readline().decode().split()[-1]
        api = connect(url).xenapi
        host = api.host.get_by_name_label("xs-a")[0]
        web = api.VM.get_by_name_label("web-01")[0]
        d = wait_for(lambda: api.host.get_data_sources(host) and dom0_of(api, host), timeout=30)
        names = [s["name_label"] for s in api.host.get_data_sources(host)]
        assert sorted(n for n in names if n.startswith("xsguard_")) == sorted(
            [name for name, _, _, _ in HOST_SOURCES] + ["xsguard_refusals"])
        wait_for(lambda: api.host.query_data_source(host, "xsguard_ports_used") == dom0_of(api, host)["ports_used"])
        d = dom0_of(api, host)
        assert api.VM.query_data_source(web, "xsguard_ports_held") == d["by_domid"][int(api.VM.get_domid(web))]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc.stdout.close()


def test_a_rebooting_vm_is_charged_by_the_daemon_as_status_charges_it(sim, api):
    """A VM rebooting (old domain gone, xapi still showing it Running here, its pre-start hook waiting
    on the ledger lock) that the ledger no longer names: xsguard-rrdd's promised and free figures are
    `xsguard status`'s, its whole need promised: 10, as the simulator's guest binds (xenstore 1, console
    1, QEMU 2 + 1 for HVM, a disk 1, a NIC's 2 queues x 2); left out, they would show 10 more free."""
    from tests.test_reboot import full_host, host_config, ledger_lock_held, reboot_in_the_background
    from xsguard import ledger, state
    from xsguard.rrdd import Reader

    host, web = full_host(api)
    cfg = host_config(api, host)
    config_path = os.path.join(api.sim.get_host_root(host), "etc", "xsguard", "xsguard.conf")
    path, boot = cfg.ledger.path, state.boot_id(cfg)
    entries = ledger.load(path, boot).entries
    assert entries is not None
    del entries[api.VM.get_uuid(web)]  # its domain held its whole need long enough: it left the ledger
    ledger.save(path, boot, entries)
    reader = Reader(cfg)
    try:
        assert {s.name: s.value for s in reader.read()}["xsguard_promised"] == 0
        old = api.VM.get_domid(web)
        with ledger_lock_held(api, host):
            thread, done = reboot_in_the_background(sim, web)
            wait_for(lambda: old not in api.sim.get_dom0(host)["by_remote_domain"])
            figures = {s.name: s.value for s in reader.read()}
            proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", config_path, "status", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        thread.join(30)
    finally:
        reader.view.drop()
    assert "error" not in done
    status = json.loads(proc.stdout.decode())
    assert status["promised"] == 10
    assert {name: figures[name] for name, _, _, _ in HOST_SOURCES} == \
        {name: status[key] for name, key, _, _ in HOST_SOURCES}
