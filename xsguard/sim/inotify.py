"""Linux inotify on one directory, through libc: the events xcp-rrdd's plugin discovery watches.

xcp-rrdd watches its plugin directory for IN_CREATE, IN_DELETE, IN_MOVED_TO and IN_MOVED_FROM
(xen-api ocaml/xcp-rrdd/bin/rrdd/xcp_rrdd.ml:387-422); the stand-in reads the same events, in
the order the kernel queued them, so that a rename over a registered file or a delete followed by
a create reach it as they reach the real daemon (polling the directory could not tell them apart).
"""

import ctypes
import os
import struct
from typing import List, Tuple

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
_NONBLOCK = os.O_NONBLOCK
_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_LIBC = ctypes.CDLL(None, use_errno=True)  # the C library this Python runs on (no look-up process)


class Inotify:
    """A non-blocking inotify descriptor watching one directory."""

    def __init__(self, directory: str, mask: int) -> None:
        fd = _LIBC.inotify_init1(_NONBLOCK | _CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _LIBC.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, "inotify_add_watch", directory)
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def read(self) -> List[Tuple[int, str]]:
        """The events queued so far, oldest first: (mask, file name)."""
        events: List[Tuple[int, str]] = []
        while True:
            try:
                raw = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            pos = 0
            while pos + _EVENT.size <= len(raw):
                _, mask, _, length = _EVENT.unpack_from(raw, pos)
                name = raw[pos + _EVENT.size:pos + _EVENT.size + length].rstrip(b"\0")
                events.append((mask, os.fsdecode(name)))
                pos += _EVENT.size + length

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
