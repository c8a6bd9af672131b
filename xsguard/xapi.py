"""Talking to xapi: log in, read what a decision needs in a few calls, log out.

Every call goes through the retry policy (transport errors only) and maps xapi's errors to
xsguard's own. Records come back as XenAPI sends them (int64 fields as strings).
"""

import http.client
import re
import ssl
import xmlrpc.client

import XenAPI

from . import endpoint
from .deadline import Deadline
from .errors import PermissionDenied, VmNotFound, XapiCertificate, XapiFailure, XapiUnreachable
from .retry import TRANSPORT_ERRORS, call_with_retries, untrusted_certificate
from .unixhttp import UnixConnection

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Tuple
    Record = Dict[str, Any]

ORIGINATOR = "xsguard"


def quote(value: str) -> str:
    """A string literal for xapi's ``get_all_records_where`` expressions."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def any_of(field: str, values: "Iterable[str]") -> str:
    """``field "f" = "a" or field "f" = "b" ...``"""
    return " or ".join("field %s = %s" % (quote(field), quote(v)) for v in values)


RBAC_DENIED = "RBAC_PERMISSION_DENIED"
# xapi's roles, most privileged first (xen-api ocaml/idl/datamodel_roles.ml, ``ordered``)
ROLES = ("pool-admin", "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only")
# what xsguard calls that a role may lack, and the least role allowed (xen-api ocaml/idl/: datamodel_host.ml
# ``call_plugin`` _R_POOL_ADMIN; datamodel.ml, class message, default _R_POOL_OP; datamodel_vm.ml,
# class VM, default _R_VM_ADMIN)
ROLE_NEEDED = {"host.call_plugin": "pool-admin", "message.create": "pool-operator",
               "VM.add_to_other_config": "vm-admin", "VM.remove_from_other_config": "vm-admin"}


def denied(details: "List[str]") -> PermissionDenied:
    """xapi's ``RBAC_PERMISSION_DENIED [permission; message]`` (xen-api ocaml/xapi/rbac.ml:216), said
    with the role the call needs: the least of the roles xapi's message lists, else ours."""
    permission = details[1] if len(details) > 1 else "?"
    said = details[2] if len(details) > 2 else ""
    listed = said.partition("Roles with this permission:")[2]
    roles = [r for r in ROLES if r in re.findall(r"[a-z-]+", listed)]
    call = permission.split("/")[0]
    role = roles[-1] if roles else ROLE_NEEDED.get(call)
    needs = "the %s role or higher" % role if role else "a role with this permission"
    return PermissionDenied("xapi denied %s to this login: it needs %s (ask a pool administrator, or set "
                            "$XSGUARD_XAPI_USER to such a login)" % (permission, needs), RBAC_DENIED, *details[1:])


LOCAL_SOCKET = "/var/lib/xcp/xapi"
NULL_REF = "OpaqueRef:NULL"


def _bounded(conn: "Any", deadline: Deadline) -> "Any":
    """Give a connection, and its socket if open, what is left of the deadline as timeout."""
    conn.timeout = max(deadline.remaining(), 0.1)
    if conn.sock is not None:
        conn.sock.settimeout(conn.timeout)
    return conn


class _DeadlineTransport(xmlrpc.client.Transport):
    """Every request's socket times out when the deadline does (per session, not process-wide)."""

    def __init__(self, deadline: Deadline, unix_path: "Optional[str]" = None) -> None:
        super().__init__()
        self.deadline = deadline
        self.unix_path = unix_path

    def make_connection(self, host: "Any") -> http.client.HTTPConnection:
        if self.unix_path is None:
            return _bounded(super().make_connection(host), self.deadline)
        cached = self._connection[1]
        if cached is None:
            cached = UnixConnection(self.unix_path, self.deadline.remaining())
            self._connection = (host, cached)
        return _bounded(cached, self.deadline)


class _DeadlineSafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, deadline: Deadline, ca_file: "Optional[str]" = None) -> None:
        # the system's trusted authorities, and the pool's own certificate when given: never unverified
        super().__init__(context=ssl.create_default_context(cafile=ca_file))
        self.deadline = deadline

    def make_connection(self, host: "Any") -> http.client.HTTPSConnection:
        return _bounded(super().make_connection(host), self.deadline)


def open_session(url: str, deadline: Deadline, ca_file: "Optional[str]" = None) -> "Any":
    """A XenAPI session object (not logged in) whose calls time out at the deadline; ``url`` holds
    no credentials (``endpoint.credentials``)."""
    if url == "local" or url.startswith("unix://"):
        path = LOCAL_SOCKET if url == "local" else url[len("unix://"):]
        return XenAPI.Session("http://localhost/", transport=_DeadlineTransport(deadline, path))
    if url.startswith("https://"):
        try:
            return XenAPI.Session(url, transport=_DeadlineSafeTransport(deadline, ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise XapiCertificate("cannot read the certificate file %s: %s" % (ca_file, exc), str(ca_file))
    return XenAPI.Session(url, transport=_DeadlineTransport(deadline))


class Xapi:
    """A logged-in session, used as a context manager that always logs out."""

    originator = ORIGINATOR  # what xapi's logs and its session records name the caller

    def __init__(self, url: str, deadline: Deadline, session_ref: "Optional[str]" = None,
                 ca_file: "Optional[str]" = None) -> None:
        self.url = url
        self.ca_file = ca_file  # a PEM file of certificates to trust besides the system's (https://)
        self.deadline = deadline
        self.session: Any = None
        self.borrowed = session_ref  # a caller's session (host plugin): no login, no logout

    def __enter__(self) -> "Xapi":
        found = endpoint.credentials(self.url)
        self.session = open_session(found.url, self.deadline, self.ca_file)
        if self.borrowed is not None:
            self.session._session = self.borrowed
            return self
        try:
            self._call(self.session.xenapi.login_with_password, found.user, found.password, "1.0", self.originator)
        except XapiFailure as exc:
            if exc.details[:1] != ["SESSION_AUTHENTICATION_FAILED"]:
                raise
            raise XapiFailure("xapi at %s refused the login of user %r (%s)"
                              % (endpoint.redacted(self.url), found.user, endpoint.CREDENTIALS_HELP), *exc.details)
        return self

    def __exit__(self, *exc_info: "Any") -> None:
        if self.session is None:
            return
        try:
            if self.borrowed is None and self.session._session is not None:
                self.session.xenapi.session.logout()
        except Exception:  # noqa: BLE001 - logging out is best effort
            pass
        self.session("close")()  # XenAPI's logout leaves the connection open

    def _call(self, fn: "Any", *args: "Any") -> "Any":
        try:
            return call_with_retries(self.deadline, fn, *args)
        except XenAPI.Failure as exc:
            details = [str(d) for d in exc.details]
            if details[:1] == [RBAC_DENIED]:
                raise denied(details)
            raise XapiFailure("xapi refused %s" % " ".join(details[:3]), *details)
        except xmlrpc.client.Fault as exc:
            raise XapiFailure("xapi fault %s: %s" % (exc.faultCode, exc.faultString))
        except (ssl.SSLError, ssl.CertificateError) as exc:
            if not untrusted_certificate(exc):
                raise XapiUnreachable("xapi is not answering on %s: %s" % (endpoint.redacted(self.url), exc))
            where = endpoint.redacted(self.url)
            raise XapiCertificate("xapi's certificate at %s is not trusted (%s): %s"
                                  % (where, getattr(exc, "verify_message", None) or exc, endpoint.CERTIFICATE_HELP),
                                  where)
        except TRANSPORT_ERRORS as exc:
            where = LOCAL_SOCKET if self.url == "local" else endpoint.redacted(self.url)
            raise XapiUnreachable("xapi is not answering on %s: %s" % (where, exc), where)

    def call(self, method: str, *args: "Any") -> "Any":
        """``session.xenapi.<method>(*args)``, retried on transport errors."""
        fn = self.session.xenapi
        for part in method.split("."):
            fn = getattr(fn, part)
        return self._call(fn, *args)

    def where(self, cls: str, expression: str) -> "Dict[str, Record]":
        return self.call("%s.get_all_records_where" % cls, expression)

    def host_by_uuid(self, uuid: str) -> "Tuple[str, Record]":
        found = self.where("host", "field \"uuid\" = %s" % quote(uuid))
        if not found:
            raise XapiFailure("no host with uuid %s in this pool" % uuid, uuid)
        return next(iter(found.items()))

    def vm_and_control_domain(self, key: str, host_ref: str) -> "Tuple[str, Record, Optional[Record]]":
        """The VM (by uuid, else by unique name) and the host's control domain, in one call."""
        control = "(field \"is_control_domain\" = \"true\" and field \"resident_on\" = %s)" % quote(host_ref)
        for match in ("field \"uuid\" = %s" % quote(key),
                      "(field \"name__label\" = %s and field \"is_a_snapshot\" = \"false\")" % quote(key)):
            found = self.where("VM", "%s or %s" % (match, control))
            dom0 = [r for r in found.values() if r.get("is_control_domain") and r.get("resident_on") == host_ref]
            vms = [(ref, r) for ref, r in found.items()
                   if r.get("uuid") == key or (r.get("name_label") == key and not r.get("is_control_domain"))]
            if len(vms) > 1:
                raise VmNotFound("%d VMs are named '%s': give the uuid" % (len(vms), key), key,
                                 *sorted(r["uuid"] for _, r in vms))
            if vms:
                return vms[0][0], vms[0][1], (dom0[0] if dom0 else None)
        raise VmNotFound("no VM has uuid or name '%s'" % key, key)

    def devices(self, vm_ref: str, vm: "Record") -> "Tuple[List[Record], List[Record], List[Record]]":
        """The VM's VBDs, VIFs and vGPUs: one call per class, whatever their number.

        vGPUs are asked for only when the VM has some (rare, and a class xapi may not serve).
        """
        match = "field \"VM\" = %s" % quote(vm_ref)
        vbds = list(self.where("VBD", match).values())
        vifs = list(self.where("VIF", match).values())
        vgpus = list(self.where("VGPU", match).values()) if vm.get("VGPUs") else []
        return vbds, vifs, vgpus

    def guest_metrics(self, vm: "Record") -> "Optional[Record]":
        """The VM's VM_guest_metrics record (its guest agent's report): one call, and only for a VM
        that has one; None for a VM without, or whose record went away since the VM was read."""
        ref = vm.get("guest_metrics") or NULL_REF
        if ref == NULL_REF:
            return None
        try:
            return dict(self.call("VM_guest_metrics.get_record", ref))
        except XapiFailure as exc:
            if exc.details[:1] == ["HANDLE_INVALID"]:
                return None
            raise

    def vms_on_host(self, host_ref: str) -> "Dict[str, Record]":
        """Every VM running on the host or being started on it (control domain included), by ref."""
        return self.where("VM", "field \"resident_on\" = %s or field \"scheduled_to_be_resident_on\" = %s"
                          % (quote(host_ref), quote(host_ref)))

    def vms_by_uuid(self, uuids: "List[str]") -> "Dict[str, Record]":
        """Records of the VMs with these uuids (those that still exist), by uuid."""
        if not uuids:
            return {}
        return {r["uuid"]: r for r in self.where("VM", any_of("uuid", uuids)).values()}
