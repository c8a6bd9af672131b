"""Where xapi is and who logs in: URLs, credentials written in them, what may be shown."""

from xsguard import endpoint


def test_a_password_is_never_shown_with_or_without_a_scheme():
    """Every form of URL with a password shows ``***`` in its place; the user and host stay."""
    for url, shown in (("https://root:secret@master/x", "https://root:***@master/x"),
                       ("root:secret@10.0.0.1:443", "root:***@10.0.0.1:443"),
                       ("http://root:p@ss@h:80/", "http://root:***@h:80/"),
                       ("https://root@master/", "https://root@master/"),
                       ("https://master/", "https://master/")):
        assert endpoint.redacted(url) == shown
        assert "secret" not in (endpoint.scheme_hint(url) or "")


def test_credentials_from_the_url_else_the_environment(monkeypatch):
    """User and password written in the URL (percent-decoded) win and leave the URL; else the
    environment's; the local socket logs in as root."""
    monkeypatch.setenv("XSGUARD_XAPI_USER", "ops")
    monkeypatch.setenv("XSGUARD_XAPI_PASSWORD", "envpw")
    assert endpoint.credentials("https://r%40x:p%3Aw@h:443/") == ("https://h:443/", "r@x", "p:w")
    assert endpoint.credentials("https://h/") == ("https://h/", "ops", "envpw")
    assert endpoint.credentials("local") == ("local", "root", "")


def test_plain_http_with_a_password_warns(monkeypatch):
    """A password over http:// warns (without the password); https://, or no password, does not."""
    monkeypatch.delenv("XSGUARD_XAPI_PASSWORD", raising=False)
    assert endpoint.cleartext_warning("http://127.0.0.1:8080/") is None
    assert endpoint.cleartext_warning("https://root:pw@h/") is None
    warning = endpoint.cleartext_warning("http://root:pw@h/")
    assert warning is not None and "clear text" in warning and "pw@" not in warning
