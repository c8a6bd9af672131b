"""xsguard.model imports nothing that reads files, runs programs or talks to xapi."""

import json
import os
import subprocess
import sys

import pytest

import xsguard
import xsguard.model

MODEL_DIR = os.path.dirname(xsguard.model.__file__)
MODULES = sorted("xsguard.model." + name[:-3] for name in os.listdir(MODEL_DIR)
                 if name.endswith(".py") and name != "__init__.py")

# modules whose import would mean I/O, processes, the network or xsguard's own edges
WITH_IO = {"subprocess", "socket", "ssl", "select", "selectors", "fcntl", "signal", "glob", "shutil", "tempfile",
           "gzip", "http", "http.client", "urllib", "urllib.request", "xmlrpc", "xmlrpc.client", "XenAPI",
           "XenAPIPlugin", "structlog", "tenacity", "logging", "xsguard.probes", "xsguard.xapi", "xsguard.ledger",
           "xsguard.state", "xsguard.bootcache", "xsguard.decision", "xsguard.config", "xsguard.decisionlog",
           "xsguard.alerts", "xsguard.retry"}
# the only xsguard modules the model may reach (namedtuple: its records' base, built without typing)
XSGUARD_ALLOWED = {"xsguard", "xsguard.errors", "xsguard.model", "xsguard.namedtuple"}

PROBE = """
import json, sys
before = set(sys.modules)
__import__(sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def imported_by(module):
    """The modules a fresh interpreter loads to import ``module``."""
    out = subprocess.check_output([sys.executable, "-c", PROBE, module], cwd=os.path.dirname(xsguard.__path__[0]))
    return set(json.loads(out))


def test_the_model_has_modules():
    """The listing found the model's modules (an empty list would make the next test pass vacuously)."""
    assert {"xsguard.model.need", "xsguard.model.charging", "xsguard.model.verdict",
            "xsguard.model.lsevtchn"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_nothing_with_io(module):
    """Importing one model module in a fresh interpreter loads no I/O module and no xsguard edge."""
    loaded = imported_by(module)
    assert module in loaded
    assert loaded & WITH_IO == set()
    edges = {m for m in loaded if m.startswith("xsguard.") and not m.startswith("xsguard.model.")}
    assert edges <= XSGUARD_ALLOWED
