"""The simulated pool's XenAPI endpoint: XML-RPC and JSON-RPC over HTTP on 127.0.0.1."""

import json
import os
import shutil
import signal
import socketserver
import sys
import threading
import xmlrpc.client
from types import TracebackType
from typing import Any, Callable, Optional, Type
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from . import wire
from .api import Api
from .pool import Pool

# how often a serving loop looks for a stop request: stopping waits for it, twice (TCP, UNIX)
POLL_INTERVAL = 0.05


class _Handler(SimpleXMLRPCRequestHandler):
    """JSON-RPC on ``/jsonrpc``, XML-RPC on every other path (``/``, ``/RPC2``, Xen Orchestra's
    ``/xmlrpc``), as xapi serves them: its handlers are post_root ``/``, post_RPC2 and post_jsonrpc
    (xen-api ocaml/idl/datamodel.ml:11229-11237), a request going to the longest prefix of its path
    (ocaml/libs/http-lib/http_svr.ml:532)."""

    rpc_paths = ()  # every path
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/jsonrpc":
            super().do_POST()
            return
        api: Api = self.server.api  # type: ignore[attr-defined]
        try:
            length = int(self.headers.get("content-length", "0"))
            request = json.loads(self.rfile.read(length).decode("utf-8"))
            version2 = request.get("jsonrpc") == "2.0"
            params = request.get("params", [] if version2 else None)
            params = [params] if isinstance(params, dict) else params
            method = request["method"]
            if not isinstance(params, list) or not isinstance(method, str) or request.get("id") is None:
                raise ValueError("malformed request")
        except (ValueError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            # ocaml-rpc's Malformed_method_request is no API error: xapi answers no JSON for it
            self.send_error(400, "malformed JSON-RPC request: %s" % exc)
            return
        reply = wire.json_response(api.dispatch(method, params), request["id"], version2, method)
        body = json.dumps(reply).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _FastResponses:
    """Parse requests as xmlrpc.server does; write responses with ``wire.response``."""

    api: Api

    def _marshaled_dispatch(self, data: Any, dispatch_method: Any = None, path: Any = None) -> Any:
        params, method = xmlrpc.client.loads(data, use_builtin_types=True)
        reply = self.api.dispatch(str(method), list(params))
        if method == "system.listMethods" and reply["Status"] == "Success":
            # the bare list, without Status and Value (xen-api ocaml/xapi/api_server.ml:128-134)
            return wire.response(reply["Value"])
        return wire.response(reply)


class _Server(_FastResponses, socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a boot storm opens hundreds of connections at once

    def __init__(self, port: int, api: Api) -> None:
        SimpleXMLRPCServer.__init__(self, ("127.0.0.1", port), requestHandler=_Handler,
                                    logRequests=False, allow_none=True)
        self.api = api

    def _dispatch(self, method: str, params: Any) -> Any:
        return self.api.dispatch(method, list(params))


class _UnixServer(_FastResponses, socketserver.ThreadingMixIn, socketserver.UnixStreamServer,
                  SimpleXMLRPCDispatcher):
    """The same endpoint on a UNIX socket, as xapi serves dom0 on /var/lib/xcp/xapi."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, path: str, api: Api) -> None:
        SimpleXMLRPCDispatcher.__init__(self, allow_none=True, encoding=None)
        socketserver.UnixStreamServer.__init__(self, path, _UnixHandler)
        self.logRequests = False
        self.api = api

    def _dispatch(self, method: str, params: Any) -> Any:
        return self.api.dispatch(method, list(params))


class _UnixHandler(_Handler):
    disable_nagle_algorithm = False  # no TCP here

    def address_string(self) -> str:
        return "local"


class Simulator:
    """A pool served on a free (or given) port, in background threads; a context manager."""

    def __init__(self, port: int = 0, pool: Optional[Pool] = None, **pool_args: Any) -> None:
        self.pool = pool or Pool(**pool_args)
        api = Api(self.pool)
        self.server = _Server(port, api)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/" % self.port
        self.socket_path = os.path.join(self.pool.root, "xapi.sock")
        self.unix_server = _UnixServer(self.socket_path, Api(self.pool, local=True))
        self.pool.set_url("unix://" + self.socket_path)  # what each simulated dom0's xsguard uses
        poll = {"poll_interval": POLL_INTERVAL}
        self.threads = [
            threading.Thread(target=self.server.serve_forever, kwargs=poll, name="xsguard-sim", daemon=True),
            threading.Thread(target=self.unix_server.serve_forever, kwargs=poll, name="xsguard-sim-local",
                             daemon=True),
        ]
        self.serving = False

    def start(self) -> "Simulator":
        for thread in self.threads:
            thread.start()
        self.serving = True
        return self

    def stop(self) -> None:
        """Stop serving (within one poll interval), close both endpoints and remove the pool's own
        directory; again is harmless."""
        self.pool.stop_timers()
        servers = (self.server, self.unix_server)
        if self.serving:  # never on a server that never served: it would wait forever
            waits = [threading.Thread(target=server.shutdown) for server in servers]
            for wait in waits:  # both loops see the request within the same poll interval
                wait.start()
            for wait in waits:
                wait.join()
        for server in servers:
            server.server_close()
        if self.pool.owns_root:
            shutil.rmtree(self.pool.root, ignore_errors=True)

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()


def serve(sim: Simulator, ready: Optional[Callable[[], None]] = None) -> None:
    """Serve until SIGINT or SIGTERM; the first line printed is the URL.

    ``ready`` runs once the endpoint answers, before the URL is printed (to start VMs).
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    if ready is not None:
        ready()
    sys.stdout.write("XenAPI at %s\n" % sim.url)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    sim.stop()
