"""``xsguard denials`` over a decision log of 100000 records. Prints figures."""

import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xsguard.denials import parse_since, read, summary  # noqa: E402


def record(i, rng):
    refused = rng.random() < 0.2
    vm = "vm-%03d" % rng.randrange(400)
    return {
        "event": "start_refused" if refused else "start_admitted",
        "time": "2026-11-26T%02d:%02d:%02d.000000Z" % (i // 6000 % 24, i // 100 % 60, i % 60),
        "vm_uuid": "%s-uuid" % vm, "vm_name": vm, "host_uuid": "h%d-uuid" % (i % 16), "host_name": "xs-%02d" % (i % 16),
        "ceiling": "xen_ports", "need": 22, "mode": "enforce", "verdict": "refuse" if refused else "admit",
        "checks": [{"ceiling": "xen_ports", "limit": 4095, "used": 4000, "promised": 10, "margin": 64, "need": 22,
                    "free": 21, "free_after": -1, "fits": False}],
        "breakdown": [{"consumer": "vif 0", "ports": 9, "why": "netback: 4 queues x 2 (split tx/rx) + 1"}] * 6,
        "duration_ms": 40.1, "version": "0.1.0",
    }


def main():
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "decisions.log")
        with open(path, "w") as handle:
            for i in range(100000):
                handle.write(json.dumps(record(i, rng), sort_keys=True) + "\n")
        size = os.path.getsize(path) >> 20
        for label, kwargs in (("all refusals", {}), ("one VM", {"vm": "vm-042"}),
                              ("one host, since 12:00", {"host": "xs-03", "since": parse_since("2026-11-26T12:00")})):
            t = time.perf_counter()
            found = read(path, **kwargs)
            groups = summary(found.records)
            print("denials over 100000 records (%d MiB), %s: %d found, %d groups, %.0f ms"
                  % (size, label, len(found.records), len(groups), (time.perf_counter() - t) * 1000))


if __name__ == "__main__":
    main()
