"""The decision log: one JSON object per line, for every decision and every guard error.

structlog is configured here and nowhere else. Each record is one ``write`` to a file opened
with ``O_APPEND`` just for it, so records from concurrent hooks never interleave, and a
logrotate rename between two records loses neither: the next record creates the new file.
"""

import json
import os
import sys

import structlog

from . import __version__, state

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, MutableMapping, Optional


class AppendingLogger:
    """A structlog logger that appends each rendered record to a file, one write each.

    A record the file cannot take goes to syslog with a note saying why (the hook writes
    its records from a detached child, whose stderr is /dev/null); stderr is the last resort.
    """

    def __init__(self, path: str, syslog_socket: "Optional[str]" = None) -> None:
        self.path = path
        self.syslog_socket = syslog_socket

    def msg(self, message: str) -> None:
        data = (message + "\n").encode("utf-8")
        try:
            state.safe_directory(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
            if written != len(data):
                raise OSError("short write (%d of %d bytes)" % (written, len(data)))
        except OSError as exc:
            self._elsewhere("cannot write the decision log %s: %s; the record: %s" % (self.path, exc, message))

    def _elsewhere(self, line: str) -> None:
        """The decision stands; syslog (else stderr) keeps what the file could not."""
        if self.syslog_socket:
            from .alerts import send_syslog

            try:
                send_syslog(self.syslog_socket, line)
                return
            except OSError:
                pass
        sys.stderr.write("xsguard: %s\n" % line)

    debug = info = warning = warn = error = critical = exception = failure = fatal = log = msg


class AppendingLoggerFactory:
    def __init__(self, path: str, syslog_socket: "Optional[str]" = None) -> None:
        self.path = path
        self.syslog_socket = syslog_socket

    def __call__(self, *args: "Any") -> AppendingLogger:
        return AppendingLogger(self.path, self.syslog_socket)


def add_version(logger: "Any", method: str, event: "MutableMapping[str, Any]") -> "MutableMapping[str, Any]":
    event.setdefault("version", __version__)
    return event


def configure(path: str, syslog_socket: "Optional[str]" = None) -> None:
    """Send every record to ``path`` as a JSON line (UTC time, event name, version); the
    records ``path`` cannot take go to ``syslog_socket``."""
    structlog.configure(
        processors=[
            add_version,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.processors.JSONRenderer(serializer=json.dumps, sort_keys=True),
        ],
        logger_factory=AppendingLoggerFactory(path, syslog_socket),
        cache_logger_on_first_use=False,
    )


def get() -> "Any":
    """The decision logger."""
    return structlog.get_logger("xsguard")
