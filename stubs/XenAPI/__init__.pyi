# Type stubs for the XenAPI client (PyPI "XenAPI", the module dom0 ships).
import xmlrpc.client
from typing import Any, List, Optional

API_VERSION_1_1: str
API_VERSION_1_2: str

class Failure(Exception):
    details: List[Any]
    def __init__(self, details: List[Any]) -> None: ...

class UDSTransport(xmlrpc.client.Transport): ...

class Session(xmlrpc.client.ServerProxy):
    _session: Optional[str]
    xenapi: Any
    def __init__(
        self,
        uri: str,
        transport: Optional[xmlrpc.client.Transport] = ...,
        encoding: Optional[str] = ...,
        verbose: bool = ...,
        allow_none: bool = ...,
        ignore_ssl: bool = ...,
    ) -> None: ...
    def _logout(self) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

def xapi_local() -> Session: ...
