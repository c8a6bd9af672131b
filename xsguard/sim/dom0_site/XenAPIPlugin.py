"""Stand-in for dom0's XenAPIPlugin (xen-api python3/examples/XenAPIPlugin.py), which is not on PyPI.

It behaves as the original: ``dispatch`` reads the XML-RPC methodCall in ``sys.argv[1]``,
hands the function a XenAPI session carrying the caller's session reference, prints a
methodResponse with ``{"Status": "Success", "Value": ...}``; a ``Failure(code, params)``
becomes ``ErrorDescription = [code] + params``, any other exception
``XENAPI_PLUGIN_FAILURE [fn, class, str]``, an unknown fn ``UNKNOWN_XENAPI_PLUGIN_FUNCTION``.

xapi runs plugins with only PATH in the environment, so dom0's Python 3.6 starts in the C
locale: it decodes argv as ASCII with surrogate escapes and writes stdout as strict ASCII.
Python 3.7 and later coerce the C locale to UTF-8 instead (PEP 538, PEP 540); under them,
importing this module puts argv and stdout back as 3.6 has them, so that a plugin that works
here works on dom0.
"""

import io
import os
import sys
import xmlrpc.client as xmlrpclib

import XenAPI


def _c_locale():
    """Started as xapi starts plugins: no locale but the LC_CTYPE=C.UTF-8 that 3.7's coercion adds."""
    if os.environ.get("LC_ALL") or os.environ.get("LANG"):
        return False
    return os.environ.get("LC_CTYPE", "C") in ("C", "POSIX", "C.UTF-8")


if sys.version_info >= (3, 7) and _c_locale():
    sys.argv = [os.fsencode(a).decode("ascii", "surrogateescape") for a in sys.argv]
    sys.stdout.flush()
    sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="ascii", errors="strict", line_buffering=True)


class Failure(Exception):
    def __init__(self, code, params):
        Exception.__init__(self)
        self.params = [code] + params

    def __str__(self):
        return str(self.params)


def success_message(result):
    return xmlrpclib.dumps(({"Status": "Success", "Value": result},), "", True)


def failure_message(description):
    return xmlrpclib.dumps(({"Status": "Failure", "ErrorDescription": description},), "", True)


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, methodname = xmlrpclib.loads(sys.argv[1])
    session_id = params[0]
    args = params[1]
    if methodname in fn_table:
        x = XenAPI.xapi_local()
        x._session = session_id
        try:
            result = fn_table[methodname](x, args)
            print(success_message(result))
        except SystemExit:
            raise
        except Failure as e:
            print(failure_message(e.params))
        except Exception as e:
            print(failure_message(["XENAPI_PLUGIN_FAILURE", methodname, e.__class__.__name__, str(e)]))
    else:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
