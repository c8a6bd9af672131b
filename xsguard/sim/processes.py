"""Run hooks and host plugins as xenopsd and xapi run them: real subprocesses, a bare environment.

Hooks: every entry of ``<root>/etc/xapi.d/<hook>/``, sorted byte-wise, argv
``-vmuuid <uuid> -reason <reason>`` (then ``-vmdomid <domid>`` once a domain exists),
environment ``PATH`` only (plus ``XSGUARD_CONFIG``,
naming the simulated host's xsguard config), stdout captured, stderr dropped, no timeout.
Plugins: ``<root>/etc/xapi.d/plugins/<name>`` with one argument, an XML-RPC methodCall.
"""

import errno
import os
import subprocess
import time
import xmlrpc.client
from typing import Any, Dict, List, Optional

from .store import ApiError

DOM0_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"


def environment(config_path: str) -> Dict[str, str]:
    return {"PATH": DOM0_PATH, "XSGUARD_CONFIG": config_path}


def run_hooks(root: str, hook: str, vm_uuid: str, reason: str, config_path: str,
              log: List[Dict[str, Any]], domid: Optional[int] = None) -> None:
    """Run every script of one hook directory; raise XAPI_HOOK_FAILED as xenopsd does."""
    directory = os.path.join(root, "etc", "xapi.d", hook)
    try:
        scripts = sorted(os.listdir(directory), key=os.fsencode)
    except FileNotFoundError:
        return
    args = ["-vmuuid", vm_uuid, "-reason", reason]
    if domid is not None:
        args += ["-vmdomid", str(domid)]
    for script in scripts:
        path = os.path.join(directory, script)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [path] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=environment(config_path), cwd="/", close_fds=True,
            )
            stdout, code = proc.stdout.decode("utf-8", "replace"), proc.returncode
        except OSError as exc:
            # forkexecd's child execs the entry; a failed exec exits 127 (no such file) or 126 (anything
            # else: not executable, a directory, a bad interpreter), read: xen-api
            # ocaml/forkexecd/helper/vfork_helper.c:296, ocaml/forkexecd/lib/fe_stubs.c:157; xenopsd then
            # treats it as any other exit code (ocaml/xenopsd/lib/xenops_hooks.ml:100-111)
            stdout, code = "", 127 if exc.errno == errno.ENOENT else 126
        log.append({"hook": "%s/%s" % (hook, script), "vm": vm_uuid, "reason": reason,
                    "exit_code": code, "stdout": stdout, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)})
        if code == 0 or code == 1:
            continue  # 1: "log and continue"
        if code < 0:  # killed by a signal: xenopsd lets Spawn_internal_error through
            raise ApiError("INTERNAL_ERROR", "xenopsd internal error: Forkhelpers.Spawn_internal_error"
                           "(%s, %r, WSIGNALED %d)" % (path, stdout, -code))
        raise ApiError("XAPI_HOOK_FAILED", "%s/%s" % (hook, script), reason, stdout, str(code))


def call_plugin(root: str, plugin: str, fn: str, session: str, args: Dict[str, str],
                config_path: str) -> str:
    """Run a host plugin and map its output as xapi does."""
    path = os.path.join(root, "etc", "xapi.d", "plugins", plugin)
    if not os.path.isfile(path):
        raise ApiError("XENAPI_MISSING_PLUGIN", plugin)
    request = xmlrpc.client.dumps((session, args), methodname=fn, allow_none=True)
    try:
        proc = subprocess.run(
            [path, request], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=environment(config_path), cwd="/", close_fds=True,
        )
    except OSError as exc:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to execute plugin", path, exc.strerror)
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", stdout, stderr)
    try:
        (response,), _ = xmlrpc.client.loads(stdout)
        status = response["Status"]  # type: ignore[index,call-overload]
        assert isinstance(response, dict)
    except Exception:  # noqa: BLE001 - anything unparseable is the plugin's fault
        raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", stdout, stderr)
    if status == "Success":
        return str(response.get("Value", ""))
    description = [str(d) for d in response.get("ErrorDescription") or ["XENAPI_PLUGIN_FAILURE"]]
    raise ApiError(*description)
