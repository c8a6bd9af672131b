"""HTTP over a UNIX socket: how xsguard reaches xapi and xcp-rrdd in dom0."""

import http.client
import socket


class UnixConnection(http.client.HTTPConnection):
    """An HTTP connection to a UNIX socket, with a timeout (the standard library has none)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
