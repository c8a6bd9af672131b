"""Stand-in for dom0's XenAPIPlugin (xen-api python3/examples/XenAPIPlugin.py), which is not on PyPI.

It behaves as the original: ``dispatch`` reads the XML-RPC methodCall in ``sys.argv[1]``,
hands the function a XenAPI session carrying the caller's session reference, prints a
methodResponse with ``{"Status": "Success", "Value": ...}``; a ``Failure(code, params)``
becomes ``ErrorDescription = [code] + params``, any other exception
``XENAPI_PLUGIN_FAILURE [fn, class, str]``, an unknown fn ``UNKNOWN_XENAPI_PLUGIN_FUNCTION``.
"""

import sys
import xmlrpc.client as xmlrpclib

import XenAPI


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
        except Failure as e:
            print(failure_message(e.params))
        except Exception as e:
            print(failure_message(["XENAPI_PLUGIN_FAILURE", methodname, e.__class__.__name__, str(e)]))
    else:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", methodname]))
