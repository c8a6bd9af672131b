"""A login whose role may not call host plugins (pool-admin only) is told so, with the role needed,
by every workstation command that asks the hosts' xsguard; and the error has one wire code."""

import os
import subprocess
import sys

import pytest

from tests.pool import make_vm, small_host
from xsguard.errors import PermissionDenied, XsguardError
from xsguard.xapi import denied

# xapi's message (xen-api ocaml/xapi/rbac.ml:210-216): [permission; "No permission ... (Roles ...)"]
DENIED_CALL_PLUGIN = ["RBAC_PERMISSION_DENIED", "host.call_plugin",
                      "No permission in user session. (Roles with this permission: pool-admin)"]
NEEDS_POOL_ADMIN = ("xsguard: xapi denied host.call_plugin to this login: it needs the pool-admin role or higher "
                    "(ask a pool administrator, or set $XSGUARD_XAPI_USER to such a login)\n")


@pytest.fixture
def operator(sim, api, tmp_path):
    """Run the command from a workstation logged in as ``operator``, a pool-operator (the simulator
    checks roles as xapi does: ``sim.add_user``)."""
    api.sim.add_user("operator", "pool-operator")
    conf = tmp_path / "xsguard.conf"
    conf.write_text("[dom0]\ninventory = %s\n\n[log]\nfile = %s\n" % (tmp_path / "no-inventory",
                                                                      tmp_path / "decisions.log"))
    env = dict(os.environ, XSGUARD_XAPI_USER="operator", XSGUARD_XAPI_PASSWORD="any")

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", str(conf), "--xapi", sim.url]
                              + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    return run


def test_workstation_commands_say_the_role_they_need(sim, api, operator):
    """pool, place, evacuate, check --host and need --host, denied host.call_plugin: exit 4 with one
    line naming the call and the pool-admin role (after the warning that the password went over plain
    http), nothing on stdout (no host listed as unreachable)."""
    cleartext = ("xsguard: warning: %s is plain http: the password goes over the network in clear text; "
                 "use https://\n" % sim.url)
    host = small_host(api, "xs-a")
    small_host(api, "xs-b")
    make_vm(api, "app", affinity=host)
    for args in (["pool"], ["place", "app"], ["evacuate", "xs-a"], ["check", "app", "--host", "xs-b"],
                 ["need", "app", "--host", "xs-a"]):
        code, out, err = operator(*args)
        assert (code, out, err) == (4, "", cleartext + NEEDS_POOL_ADMIN), args


def test_the_role_needed_is_the_least_xapi_lists():
    """xapi lists every role with the permission: the least of them is the one named; a message
    without the list falls back to what xsguard knows of its own calls; the details are kept."""
    err = denied(["RBAC_PERMISSION_DENIED", "VM.add_to_other_config/key:xsguard-held-ports",
                  "No permission in user session. (Roles with this permission: pool-admin, pool-operator, "
                  "vm-power-admin, vm-admin)"])
    assert "it needs the vm-admin role or higher" in err.message
    assert err.params[1:] == ["RBAC_PERMISSION_DENIED", "VM.add_to_other_config/key:xsguard-held-ports",
                              "No permission in user session. (Roles with this permission: pool-admin, "
                              "pool-operator, vm-power-admin, vm-admin)"]
    assert "the pool-operator role or higher" in denied(["RBAC_PERMISSION_DENIED", "message.create",
                                                         "no session in context"]).message
    assert "needs a role with this permission" in denied(["RBAC_PERMISSION_DENIED", "pool.sync_database"]).message


def test_permission_denied_has_its_own_wire_code():
    """One class, one code: what a plugin caller and the decision log read."""
    err = denied(DENIED_CALL_PLUGIN)
    assert isinstance(err, PermissionDenied) and isinstance(err, XsguardError)
    assert err.code == "XSGUARD_PERMISSION_DENIED"
