"""Where the captured fixtures are."""

import os

ROOT = os.path.join(os.path.dirname(__file__), "fixtures")
PV = os.path.join(ROOT, "xen417-pv-dom0-2vcpu")
PVH = os.path.join(ROOT, "xen417-pvh-qdisk-dom0-2vcpu")


def read(*parts: str) -> str:
    with open(os.path.join(*parts)) as handle:
        return handle.read()
