"""The simulated pool's XenAPI endpoint: XML-RPC over HTTP on 127.0.0.1."""

import signal
import socketserver
import sys
import threading
from types import TracebackType
from typing import Any, Optional, Type
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from .api import Api
from .pool import Pool


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")
    protocol_version = "HTTP/1.1"


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a boot storm opens hundreds of connections at once

    def __init__(self, port: int, api: Api) -> None:
        SimpleXMLRPCServer.__init__(self, ("127.0.0.1", port), requestHandler=_Handler,
                                    logRequests=False, allow_none=True)
        self.api = api

    def _dispatch(self, method: str, params: Any) -> Any:
        return self.api.dispatch(method, list(params))


class Simulator:
    """A pool served on a free (or given) port, in background threads; a context manager."""

    def __init__(self, port: int = 0, pool: Optional[Pool] = None, **pool_args: Any) -> None:
        self.pool = pool or Pool(**pool_args)
        self.server = _Server(port, Api(self.pool))
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/" % self.port
        self.pool.set_url(self.url)
        self.thread = threading.Thread(target=self.server.serve_forever, name="xsguard-sim", daemon=True)

    def start(self) -> "Simulator":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.pool.stop_timers()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()


def serve(sim: Simulator) -> None:
    """Serve until SIGINT or SIGTERM; the first line printed is the URL."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    sys.stdout.write("XenAPI at %s\n" % sim.url)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    sim.stop()
