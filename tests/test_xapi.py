"""xsguard's xapi session over each kind of URL: the local socket, unix://, https."""

import os
import ssl
import subprocess
import threading

import pytest

from xsguard.deadline import Deadline
from xsguard.errors import XapiUnreachable
from xsguard.sim.api import Api
from xsguard.sim.server import _Server
from xsguard.xapi import Xapi


def test_unix_url_reaches_xapi_on_that_socket(sim, api):
    """unix:///path: the session logs in on that socket as root and reads the pool."""
    host = api.sim.add_host("xs-a", {})
    with Xapi("unix://" + sim.socket_path, Deadline(5)) as xs:
        ref, record = xs.host_by_uuid(api.host.get_uuid(host))
    assert (ref, record["name_label"]) == (host, "xs-a")
    assert ["xsguard", "host.get_all_records_where"] in api.sim.get_calls()


def test_unix_url_to_no_socket_is_unreachable(tmp_path):
    """A socket path nobody listens on: XapiUnreachable naming the URL, within the deadline."""
    url = "unix://%s" % (tmp_path / "none")
    with pytest.raises(XapiUnreachable) as caught:
        with Xapi(url, Deadline(0.5)):
            pass
    assert caught.value.message.startswith("xapi is not answering on %s: " % url)


@pytest.fixture
def https_url(sim, tmp_path):
    """The simulated pool's XenAPI over TLS, with a self-signed certificate for 127.0.0.1."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = _Server(0, Api(sim.pool))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d/" % server.server_address[1], cert
    server.shutdown()
    server.server_close()


def test_https_url_verifies_the_certificate(https_url, api, monkeypatch):
    """https: a certificate no trusted CA vouches for is refused; named in SSL_CERT_FILE, it is
    trusted and the session logs in and reads the pool."""
    url, cert = https_url
    host = api.sim.add_host("xs-a", {})
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    with pytest.raises(XapiUnreachable) as caught:
        with Xapi(url, Deadline(0.5)):
            pass
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    with Xapi(url, Deadline(5)) as xs:
        assert xs.host_by_uuid(api.host.get_uuid(host))[0] == host
