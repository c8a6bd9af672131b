"""The verdict: each ceiling, each branch, and the operator's message."""

from tests import records
from xsguard.model.ceilings import Ceiling
from xsguard.model.need import HostFacts, vm_need
from xsguard.model.profiles import XS8
from xsguard.model.verdict import ascii_safe, judge

PORTS = Ceiling("xen_ports", 4095, "boot_log", "2-level", "kernel log")
IRQS = Ceiling("linux_irqs", 41220, "boot_log", "NR_IRQS 33024", "kernel log")
NEED = vm_need(records.vm(4, hvm=True, firmware="uefi", windows=True, name_label="win-07"),
               records.disks(2), records.nics(1), HostFacts(16), XS8)  # 22 ports


def test_admit_when_it_fits_exactly():
    """Free after the start may reach 0: 4095 - 64 margin - 4009 used = 22 = the need."""
    v = judge(NEED, "xs-a", [PORTS, IRQS], {"xen_ports": 4009, "linux_irqs": 5000}, 0, 64)
    assert v.verdict == "admit"
    assert v.binding.ceiling == "xen_ports"
    assert v.binding.free_after == 0


def test_refuse_one_port_short():
    """One port more in use and the start is refused on the Xen port ceiling."""
    v = judge(NEED, "xs-a", [PORTS, IRQS], {"xen_ports": 4010, "linux_irqs": 5000}, 0, 64)
    assert v.verdict == "refuse"
    assert (v.binding.ceiling, v.binding.free, v.binding.free_after) == ("xen_ports", 21, -1)


def test_promised_ports_count_against_free():
    """Ports promised to VMs still starting are not free."""
    v = judge(NEED, "xs-a", [PORTS, IRQS], {"xen_ports": 3000, "linux_irqs": 3000}, 1010, 64)
    assert v.verdict == "refuse"
    assert v.binding.promised == 1010


def test_irq_ceiling_can_bind_first():
    """On a FIFO dom0 the IRQ ceiling is the one a dense host meets first."""
    fifo = Ceiling("xen_ports", 131071, "boot_log", "fifo", "kernel log")
    v = judge(NEED, "xs-a", [fifo, IRQS], {"xen_ports": 40000, "linux_irqs": 41150}, 0, 64)
    assert v.verdict == "refuse"
    assert v.binding.ceiling == "linux_irqs"
    assert [c.fits for c in v.checks] == [True, False]


def test_unknown_ceiling_is_not_checked():
    """A ceiling whose limit is unknown never refuses; the known one decides."""
    unknown = Ceiling("linux_irqs", None, "unknown")
    v = judge(NEED, "xs-a", [PORTS, unknown], {"xen_ports": 100, "linux_irqs": 10 ** 9}, 0, 64)
    assert v.verdict == "admit"
    assert v.binding.ceiling == "xen_ports"


def test_margin_is_kept_back():
    """A start that fits only by eating the margin is refused."""
    v = judge(NEED, "xs-a", [PORTS], {"xen_ports": 4095 - 30}, 0, 64)
    assert v.verdict == "refuse"
    assert v.binding.margin == 64


def test_refusal_message_tells_what_why_and_what_to_do():
    """The message names the VM, host, need vs free, the largest consumers and the remedies."""
    v = judge(NEED, "xs-a", [PORTS, IRQS], {"xen_ports": 4020, "linux_irqs": 5000}, 5, 64)
    m = v.message
    assert "win-07" in m and NEED.vm_uuid in m and "'xs-a'" in m
    assert "needs 22 dom0 event channels; 6 are left under the Xen event-channel port limit" in m
    assert "(4095: 4020 in use, 5 promised to VMs starting, 64 kept free for dom0)" in m
    assert "Largest consumers: vif 0 9, qemu-ioreq 5, varstored 4." in m
    assert "on=<host>" in m and "xen.fifo_events=0" in m and "[policy] bypass" in m and "other-config" not in m
    assert m == m.encode("ascii").decode("ascii")


def test_message_is_ascii_whatever_the_name():
    """Newlines, escapes and non-ASCII in a VM name cannot break or colour the message."""
    need = NEED._replace(vm_name="evil\n\x1b[31mname\u00e9\U0001f600")
    v = judge(need, "h\u00f4te", [PORTS], {"xen_ports": 4090}, 0, 64)
    first = v.message.splitlines()[0]
    assert "evil\\u000a\\u001b[31mname\\u00e9\\U0001f600" in first
    assert "h\\u00f4te" in first
    assert len(v.message.splitlines()) == 8


def test_json_carries_every_figure():
    """The verdict's JSON has the keys scripts read."""
    v = judge(NEED, "xs-a", [PORTS, IRQS], {"xen_ports": 100, "linux_irqs": 200}, 3, 64)
    j = v.as_json()
    for key in ("verdict", "need", "used", "promised", "limit", "margin", "free", "ceiling", "message"):
        assert key in j
    assert (j["need"], j["used"], j["promised"], j["limit"], j["margin"]) == (22, 100, 3, 4095, 64)
    assert j["free"] == 4095 - 64 - 100 - 3


def test_ascii_safe():
    """Printable ASCII passes; the rest, control characters included, is escaped as tables escape it."""
    assert ascii_safe("ok \t\x7f\u00e9") == "ok \\u0009\\u007f\\u00e9"


def test_remedy_follows_where_the_limit_came_from():
    """2-level: switch to FIFO; configured: check the config; FIFO: nothing to raise; IRQs: the kernel."""
    used = {"xen_ports": 4090, "linux_irqs": 41200}
    two_level = judge(NEED, "h", [PORTS], used, 0, 64).message
    configured = judge(NEED, "h", [PORTS._replace(origin="configured")], used, 0, 64).message
    fifo = judge(NEED, "h", [Ceiling("xen_ports", 4095, "boot_log", "fifo", "kernel log")], used, 0, 64).message
    irqs = judge(NEED, "h", [IRQS], used, 0, 64).message
    assert "drop xen.fifo_events=0" in two_level
    assert "[dom0] port_limit" in configured and "fifo_events" not in configured
    assert "131071 ports are Xen's most" in fifo
    assert "larger NR_IRQS" in irqs


def test_first_line_of_a_refusal_says_it_on_its_own():
    """A storage migration's refusal reaches the operator inside an INTERNAL_ERROR, its first line
    right after xenopsd's wrapper: that line alone names the operation, the VM, the host, the need
    and what is left, for a start and, reworded, for a migration."""
    from xsguard.model.placement import reworded

    v = judge(NEED, "xs-b", [PORTS, IRQS], {"xen_ports": 4010, "linux_irqs": 5000}, 0, 64)
    vm = "VM 'win-07' (%s)" % NEED.vm_uuid
    assert v.message.splitlines()[0] == ("xsguard refused to start %s on host 'xs-b': it needs 22 dom0 event "
                                         "channels; 21 are left under the Xen event-channel port limit" % vm)
    assert reworded(v.message, "migrate", []).splitlines()[0] == (
        "xsguard refused to migrate %s to host 'xs-b': it needs 22 dom0 event channels; 21 are left under the "
        "Xen event-channel port limit" % vm)
