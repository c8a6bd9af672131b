"""Retry policy for calls to xapi, configured in one place.

Only transport errors are retried (a socket error, xapi restarting, an HTTP error status);
a XenAPI ``Failure`` is an answer and is never retried. Retries stop at the deadline.
"""

import http.client
import socket
import ssl
import xmlrpc.client

from .deadline import Deadline

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar
    T = TypeVar("T")


TRANSPORT_ERRORS = (OSError, socket.timeout, http.client.HTTPException, xmlrpc.client.ProtocolError)


def untrusted_certificate(exc: BaseException) -> bool:
    """A TLS peer whose certificate did not verify (not retried: it stays untrusted). Python 3.6 has
    no SSLCertVerificationError: an SSLError with this reason, or a CertificateError (wrong name)."""
    return isinstance(exc, ssl.CertificateError) or (
        isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) == "CERTIFICATE_VERIFY_FAILED")


def _retried(exc: BaseException) -> bool:
    return isinstance(exc, TRANSPORT_ERRORS) and not untrusted_certificate(exc)


def stop_at_deadline(deadline: Deadline) -> "Callable[[Any], bool]":
    """A tenacity stop condition: no further attempt once less than a tenth of a second is left."""

    def stop(retry_state: "Any") -> bool:
        return deadline.remaining() < 0.1

    return stop


def wait_within(deadline: Deadline, wait: "Callable[[Any], float]") -> "Callable[[Any], float]":
    """A tenacity wait cut short so that the next attempt still has a tenth of a second."""

    def within(retry_state: "Any") -> float:
        return max(0.0, min(wait(retry_state), deadline.remaining() - 0.1))

    return within


def xapi_retrying(deadline: Deadline, attempts: int) -> "Any":
    """The policy: transport errors only, backing off 0.1 s to 1 s, within the deadline."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_any, wait_exponential

    return Retrying(
        retry=retry_if_exception(_retried),
        stop=stop_any(stop_after_attempt(attempts), stop_at_deadline(deadline)),  # type: ignore[arg-type]
        wait=wait_within(deadline, wait_exponential(multiplier=0.1, max=1.0)),
        reraise=True,
    )


def call_with_retries(deadline: Deadline, fn: "Callable[..., T]", *args: "Any") -> "T":
    """``fn(*args)`` under the xapi retry policy.

    The first attempt runs bare: tenacity is imported only once a transport error happens,
    so that the hook's usual path does not pay for its import.
    """
    try:
        return fn(*args)
    except TRANSPORT_ERRORS as exc:
        if deadline.remaining() < 0.1 or untrusted_certificate(exc):
            raise
    return xapi_retrying(deadline, attempts=3)(fn, *args)
