"""Helpers to build a simulated pool through the XenAPI client, as a test or a user would."""

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import pytest
import XenAPI

GiB = 1024 ** 3
T = TypeVar("T")


class Session(XenAPI.Session):
    """XenAPI's session, whose connection is closed on logout, or at the end of the test that made
    it (``close_sessions``): XenAPI's own leaves it to the garbage collector."""

    made: List["Session"] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Session.made.append(self)

    def _logout(self) -> Any:
        try:
            return super()._logout()
        finally:
            self("close")()


def close_sessions() -> None:
    while Session.made:
        Session.made.pop()("close")()


def connect(url: str, originator: str = "tests") -> Any:
    session = Session(url)
    session.xenapi.login_with_password("root", "", "1.0", originator)
    return session


def make_vm(api: Any, name: str, vcpus: int = 1, hvm: bool = False, disks: int = 1, nics: int = 1,
            firmware: str = "bios", windows: bool = False, memory_gib: float = 1, **extra: Any) -> str:
    record = {
        "name_label": name,
        "VCPUs_max": str(vcpus),
        "VCPUs_at_startup": str(vcpus),
        "memory_static_max": str(int(memory_gib * GiB)),
        "HVM_boot_policy": "BIOS order" if hvm else "",
        "HVM_boot_params": {"firmware": firmware} if hvm else {},
        "platform": {"viridian": "true", "device_id": "0002"} if windows else {},
    }
    record.update(extra)
    ref = api.VM.create(record)
    for d in range(disks):
        api.VBD.create({"VM": ref, "userdevice": str(d), "type": "Disk", "empty": False})
    for n in range(nics):
        api.VIF.create({"VM": ref, "device": str(n), "network": "OpaqueRef:NULL"})
    return ref


def small_host(api: Any, name: str = "xs-a", port_limit: int = 200, vcpus: int = 4,
               margin: int = 8, config: Optional[Dict[str, str]] = None) -> str:
    """A host whose dom0 has ``port_limit`` ports (2-level ABI, limit set in xsguard's config); ``config``
    sets more of xsguard's config ("section.key": value)."""
    host = api.sim.add_host(name, {"vcpus": str(vcpus), "abi": "2-level", "port_limit": str(port_limit)})
    values = {"dom0.port_limit": str(port_limit), "policy.margin": str(margin)}
    values.update(config or {})
    api.sim.set_xsguard_config(host, values)
    return host


TEN: Dict[str, Any] = dict(vcpus=2, hvm=True, disks=1, nics=1)  # 10 ports on a 4-vCPU dom0: 1 + 1 + (2 + 1) + 1 + 2 x 2


def host_with_free(api: Any, name: str, free: int) -> str:
    """A host with ``free`` ports left for guests: 40 used by its 4-vCPU dom0, a margin of 8."""
    return small_host(api, name, port_limit=40 + 8 + free, vcpus=4)


def running(api: Any, name: str, host: str, **fields: Any) -> str:
    """A VM of ``TEN``'s shape started on ``host``, once dom0 holds its 10 ports."""
    vm = make_vm(api, name, affinity=host, **dict(TEN, **fields))
    api.VM.start_on(vm, host, False, False)
    wait_for(lambda: int(api.sim.get_dom0(host)["by_remote_domain"].get(api.VM.get_domid(vm), 0)) == 10)
    return vm


def wait_for(predicate: Callable[[], Optional[T]], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met within %.1fs" % timeout)


def failure(fn: Callable[..., Any], *args: Any) -> List[Any]:
    """The error details of a XenAPI call that must fail."""
    try:
        fn(*args)
    except XenAPI.Failure as exc:
        return exc.details
    raise AssertionError("call succeeded")


def xsguard_processes(root: str) -> List[int]:
    """The pids of a host's hooks and plugin runs still alive, the detached journal writers they
    fork included (a child keeps its parent's command line, which names the host's /etc/xapi.d)."""
    import os

    marker = os.path.join(root, "etc", "xapi.d").encode()
    pids: List[int] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(pid))
    return pids


def decision_log(api: Any, host: str, count: Optional[int] = None) -> List[Dict[str, Any]]:
    """A host's decision log, once every hook and plugin run on it (and the detached child that
    writes its records) has ended: it must hold exactly ``count`` records, when given."""
    import json
    import os

    root = api.sim.get_host_root(host)
    wait_for(lambda: not xsguard_processes(root))
    path = os.path.join(root, "var", "log", "xsguard", "decisions.log")
    try:
        with open(path) as handle:
            found = [json.loads(line) for line in handle]
    except FileNotFoundError:
        found = []
    assert count is None or len(found) == count, "expected %d records, found %s" % (count, [r["event"] for r in found])
    return found


def forbid_xapi_under_the_lock(monkeypatch: pytest.MonkeyPatch, as_the_lock_is_taken: Callable[[str], None]) -> None:
    """Any xapi call made while the ledger's lock is held fails the test; ``as_the_lock_is_taken(path)``
    runs just before the lock is taken (a charge appearing between a decision's reading and its lock)."""
    from contextlib import contextmanager

    from xsguard import ledger
    from xsguard.deadline import Deadline
    from xsguard.xapi import Xapi

    held: List[bool] = []
    real_locked, real_call = ledger.locked, Xapi._call

    @contextmanager
    def locked(path: str, deadline: Deadline, poll: float = 0.002) -> Iterator[float]:
        as_the_lock_is_taken(path)
        with real_locked(path, deadline, poll) as waited:
            held.append(True)
            try:
                yield waited
            finally:
                held.pop()

    def call(self: Xapi, fn: Any, *args: Any) -> Any:
        assert not held, "a xapi call under the ledger lock: %s" % fn
        return real_call(self, fn, *args)

    monkeypatch.setattr(ledger, "locked", locked)
    monkeypatch.setattr(Xapi, "_call", call)
