"""A simulated pool of 16 hosts x 1000 VMs: how long it takes to build, and VM.get_all_records. Prints figures."""

import http.client
import os
import sys
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.pool import connect  # noqa: E402
from xsguard.sim.scenario import build  # noqa: E402
from xsguard.sim.server import Simulator  # noqa: E402

HOSTS = 16
VMS_PER_HOST = 1000


def main():
    doc = {
        "hosts": [{"name": "xs-%02d" % h, "dom0": {"vcpus": 16}} for h in range(HOSTS)],
        "vms": [{"name": "vm-h%02d" % h, "count": VMS_PER_HOST, "vcpus": 2, "hvm": True, "disks": 1, "nics": 1,
                 "affinity": "xs-%02d" % h} for h in range(HOSTS)],
    }
    started = time.perf_counter()
    with Simulator() as sim:
        build(sim.pool, doc)
        built = time.perf_counter() - started
        print("built %d hosts x %d VMs (with their VBDs and VIFs): %.1f s" % (HOSTS, VMS_PER_HOST, built))
        session = connect(sim.url)
        api = session.xenapi
        request = xmlrpc.client.dumps((session._session,), "VM.get_all_records").encode()
        raw = []
        for _ in range(3):
            t = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", sim.port)
            conn.request("POST", "/", request, {"Content-Type": "text/xml"})
            body = conn.getresponse().read()
            raw.append(time.perf_counter() - t)
            conn.close()
        print("VM.get_all_records answered (request sent to last byte received, %d MiB): best %.2f s"
              % (len(body) >> 20, min(raw)))
        times = []
        for _ in range(3):
            t = time.perf_counter()
            records = api.VM.get_all_records()
            times.append(time.perf_counter() - t)
        print("VM.get_all_records through the XenAPI client, %d records parsed: best %.2f s, worst %.2f s"
              % (len(records), min(times), max(times)))
        t = time.perf_counter()
        api.VM.get_all_records_where('field "name__label" = "vm-h07-0500"')
        print("VM.get_all_records_where by name: %.0f ms" % ((time.perf_counter() - t) * 1000))


if __name__ == "__main__":
    main()
