"""xsguard's xapi session over each kind of URL: the local socket, unix://, https."""

import os

import pytest

from xsguard.deadline import Deadline
from xsguard.errors import XapiCertificate, XapiUnreachable
from xsguard.xapi import Xapi


def test_unix_url_reaches_xapi_on_that_socket(sim, api):
    """unix:///path: the session logs in on that socket as root and reads the pool."""
    host = api.sim.add_host("xs-a", {})
    with Xapi("unix://" + sim.socket_path, Deadline(5)) as xs:
        ref, record = xs.host_by_uuid(api.host.get_uuid(host))
    assert (ref, record["name_label"]) == (host, "xs-a")
    assert ["xsguard", "host.get_all_records_where"] in api.sim.get_calls()


def test_the_simulator_records_each_call_with_its_arguments(sim, api):
    """get_calls_made: from the n-th call on, each call's originator, method and arguments (the
    session left out), in order: what the hook benchmark's floor replays."""
    host = api.sim.add_host("xs-a", {})
    uuid = api.host.get_uuid(host)
    before = len(api.sim.get_calls())
    with Xapi("unix://" + sim.socket_path, Deadline(5)) as xs:
        xs.host_by_uuid(uuid)
    made = [c for c in api.sim.get_calls_made(str(before)) if c[0] == "xsguard"]
    assert made == [["xsguard", "host.get_all_records_where", ['field "uuid" = "%s"' % uuid]]]


def test_unix_url_to_no_socket_is_unreachable(tmp_path):
    """A socket path nobody listens on: XapiUnreachable naming the URL, within the deadline."""
    url = "unix://%s" % (tmp_path / "none")
    with pytest.raises(XapiUnreachable) as caught:
        with Xapi(url, Deadline(0.5)):
            pass
    assert caught.value.message.startswith("xapi is not answering on %s: " % url)


def test_https_url_verifies_the_certificate(https_url, api, monkeypatch):
    """https: a certificate no trusted CA vouches for is refused as untrusted (not retried: at once,
    whatever the deadline), saying how to trust it; named in SSL_CERT_FILE, it is trusted and the
    session logs in and reads the pool."""
    url, cert = https_url
    host = api.sim.add_host("xs-a", {})
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    deadline = Deadline(30)
    with pytest.raises(XapiCertificate) as caught:
        with Xapi(url, deadline):
            pass
    assert caught.value.message.startswith("xapi's certificate at %s is not trusted (" % url)
    assert "--ca-file" in caught.value.message and deadline.remaining() > 25
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    with Xapi(url, Deadline(5)) as xs:
        assert xs.host_by_uuid(api.host.get_uuid(host))[0] == host
