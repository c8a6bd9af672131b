"""argv and stdout as UTF-8 whatever the locale: every entry point that prints names calls this first.

dom0's Python 3.6 runs in the C locale under xapi (plugins get only PATH), cron, systemd and
``ssh host xsguard ...``: it decodes argv as ASCII (a non-ASCII byte becomes a lone surrogate,
which XML-RPC cannot encode) and writes stdout as strict ASCII (a VM named "café-01" ends the
command with UnicodeEncodeError). xapi, terminals and pipes read UTF-8.
"""

import io
import os
import sys


def utf8_io() -> None:
    sys.argv = [os.fsencode(arg).decode("utf-8", "replace") for arg in sys.argv]
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        sys.stdout.flush()
        sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="utf-8", errors="replace", line_buffering=True)
