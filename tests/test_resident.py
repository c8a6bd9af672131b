"""check and place of a VM on the host it runs on: "resident", never a refusal of itself."""

import json
import os
import subprocess
import sys

from tests.pool import host_with_free, running


def test_check_of_a_running_vm_on_its_own_host_answers_resident(api, workstation):
    """A VM holding 10 ports on a host with 5 left: check there answers resident (exit 0), from a
    workstation (the host's plugin) and in that host's dom0, and place lists that host as resident."""
    a = host_with_free(api, "xs-a", 15)
    running(api, "web", a)  # 10 of the 15 taken: 5 left
    code, out, _ = workstation("check", "web", "--json")
    answer = json.loads(out)
    assert code == 0 and (answer["verdict"], answer["host"], answer["checks"]) == ("resident", "xs-a", [])
    assert "already runs on host 'xs-a'" in answer["message"]
    conf = os.path.join(api.sim.get_host_root(a), "etc", "xsguard", "xsguard.conf")
    proc = subprocess.run([sys.executable, "-m", "xsguard", "--config", conf, "check", "web"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.returncode == 0 and proc.stdout.decode().startswith("RESIDENT"), proc.stderr.decode()
    code, out, _ = workstation("place", "web", "--json")
    assert [(h["host_name"], h["verdict"]) for h in json.loads(out)["hosts"]] == [("xs-a", "resident")]


def test_check_on_another_host_still_judges_it(api, workstation):
    """The same VM checked for another host (--host) is judged there as any arriving VM."""
    a = host_with_free(api, "xs-a", 15)
    host_with_free(api, "xs-b", 5)
    running(api, "web", a)
    code, out, _ = workstation("check", "web", "--host", "xs-b", "--json")
    assert code == 3 and (json.loads(out)["verdict"], json.loads(out)["free_after"]) == ("refuse", -5)
