"""Every failure xsguard reports, one small class each, with its wire code.

The wire code is what a caller of the host plugin receives as the XenAPI error code, and
what the decision log records as ``error``. ``params`` are readable strings.
"""


TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import List


class XsguardError(Exception):
    """Base class: a failure of xsguard's own, with a stable code and readable params."""

    code = "XSGUARD_INTERNAL_ERROR"

    def __init__(self, message: str, *details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = [str(d) for d in details]

    @property
    def params(self) -> "List[str]":
        return [self.message] + self.details

    def __str__(self) -> str:
        return self.message


class ConfigError(XsguardError):
    """The configuration file is unreadable or holds a bad value (the message names the key)."""

    code = "XSGUARD_BAD_CONFIG"


class BadArgument(XsguardError):
    """A caller passed an argument xsguard cannot use."""

    code = "XSGUARD_BAD_ARGUMENT"


class VmNotFound(XsguardError):
    """No VM has the uuid or name given."""

    code = "XSGUARD_VM_NOT_FOUND"


class NotACandidate(XsguardError):
    """The VM is a template, a snapshot or a control domain: it is never started as a guest."""

    code = "XSGUARD_NOT_A_CANDIDATE"


class ProbeFailed(XsguardError):
    """Reading dom0's state failed: a tool missing, slow, or printing garbage; a file unreadable."""

    code = "XSGUARD_PROBE_FAILED"


class XapiUnreachable(XsguardError):
    """xapi did not answer (socket error, restart in progress, timeout)."""

    code = "XSGUARD_XAPI_UNREACHABLE"


class XapiCertificate(XsguardError):
    """xapi's TLS certificate is not trusted (a self-signed pool certificate not named as trusted)."""

    code = "XSGUARD_XAPI_CERTIFICATE"


class XapiFailure(XsguardError):
    """xapi answered with an error."""

    code = "XSGUARD_XAPI_FAILURE"


class PermissionDenied(XsguardError):
    """xapi denied a call to the login's role (``RBAC_PERMISSION_DENIED``): the message names the
    call and the role it needs."""

    code = "XSGUARD_PERMISSION_DENIED"


class DeadlineExceeded(XsguardError):
    """The decision did not finish within the configured deadline."""

    code = "XSGUARD_DEADLINE_EXCEEDED"


class UnsafeDirectory(PermissionError):
    """A state or log directory another user could plant files in: not owned by root or the
    running user, or writable by its group or by all. An OSError, so that every writer
    treats it as the write failure it stands for (the ledger unavailable, the log elsewhere)."""


def wire_error(exc: BaseException) -> XsguardError:
    """Map any exception to the XsguardError that goes on the wire (one place for the mapping)."""
    if isinstance(exc, XsguardError):
        return exc
    return XsguardError(
        "internal error in xsguard: %s: %s" % (type(exc).__name__, exc), type(exc).__name__
    )
