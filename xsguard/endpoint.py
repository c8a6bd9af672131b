"""Where xapi is and who logs in: the URL, its credentials, the certificate to trust.

No XenAPI here: the command reads this before it knows whether XenAPI is importable.
"""

import os
import urllib.parse

from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Optional

USER_VARIABLE = "XSGUARD_XAPI_USER"
PASSWORD_VARIABLE = "XSGUARD_XAPI_PASSWORD"
CREDENTIALS_HELP = ("a remote xapi is logged into as $%s (default root) with $%s (default empty)"
                    % (USER_VARIABLE, PASSWORD_VARIABLE))
# xen-api ocaml/xapi-cli-server/cli_frontend.ml: "host-get-server-certificate", "Get the server TLS
# certificate of a host" (the certificate only, never the key)
CERTIFICATE_HELP = ("XenServer and XCP-ng answer with a self-signed certificate: save the pool master's"
                    " (in its dom0: xe host-get-server-certificate host=<master> > pool.pem) and trust it with"
                    " --ca-file pool.pem or [xapi] ca_file; verification is never turned off")


class Credentials(NamedTuple):
    """The URL to connect to (no user or password in it) and who logs in."""

    url: str
    user: str
    password: str


def is_local(url: str) -> bool:
    """xapi's UNIX socket in this dom0 (pre-authenticated as root)."""
    return url == "local" or url.startswith("unix://")


def scheme_hint(url: str) -> "Optional[str]":
    """What is wrong with a URL given without a scheme (``127.0.0.1:34713``), else None."""
    if is_local(url) or url.startswith(("http://", "https://")):
        return None
    shown = redacted(url)[:80]
    where = shown.rstrip("/")
    return ("--xapi %r names no scheme: give https://%s/ for a pool master (port 443), or http://%s/ for"
            " `xsguard simulate`" % (shown, where, where))


def redacted(url: str) -> str:
    """The URL as it may be shown: a password in it replaced by ``***`` (with a scheme or without)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return url
    userinfo, host = netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return "%s%s%s@%s%s%s" % (scheme, sep, user + (":***" if ":" in userinfo else ""), host, slash, path)


def credentials(url: str) -> Credentials:
    """Who logs in at ``url``: a user and password written in the URL, else the environment's."""
    if is_local(url):
        return Credentials(url, "root", "")  # the local socket is pre-authenticated as root
    parts = urllib.parse.urlsplit(url)
    user = os.environ.get(USER_VARIABLE, "root")
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
    return Credentials(url, user, password)


def cleartext_warning(url: str) -> "Optional[str]":
    """A warning when a password would cross the network unencrypted (plain http://), else None."""
    found = credentials(url)
    if not found.url.startswith("http://") or not found.password:
        return None
    return ("warning: %s is plain http: the password goes over the network in clear text;"
            " use https://" % redacted(url))
