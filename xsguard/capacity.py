"""What a host answers for ``xsguard capacity`` and ``xsguard vms`` (host plugin ``capacity``, ``needs``):
read in its own dom0, with its own config and profile; the arithmetic is ``model.capacity``'s."""


from . import gather, probes, status
from .config import Config
from .deadline import Deadline
from .errors import BadArgument
from .model import capacity as model
from .model import need as need_model
from .model.ceilings import LINUX_IRQS, XEN_PORTS
from .model.need import HostFacts
from .xapi import Xapi, quote

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

    from .xapi import Record


def parse_shape(args: "Dict[str, str]") -> model.Shape:
    """A shape from the plugin's arguments (numbers and yes/no as text), or BadArgument."""
    numbers = {}
    for key, default in (("vcpus", "1"), ("disks", "1"), ("vifs", "1")):
        text = args.get(key, default)
        if not text.isdigit():
            raise BadArgument("%s must be a whole number, not %r" % (key, text[:20]), key)
        numbers[key] = int(text)
    flags = {}
    for key in ("hvm", "uefi"):
        text = args.get(key, "false").lower()
        if text not in ("true", "false"):
            raise BadArgument("%s must be true or false, not %r" % (key, text[:20]), key)
        flags[key] = text == "true"
    try:
        return model.shape(numbers["vcpus"], numbers["disks"], numbers["vifs"], flags["hvm"], flags["uefi"])
    except ValueError as exc:
        raise BadArgument(str(exc))


def shape_args(shape: model.Shape) -> "Dict[str, str]":
    """The plugin's arguments for a shape (``parse_shape`` reads them back)."""
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in shape.as_json().items()}


def _here(cfg: Config, api: Xapi) -> "Tuple[str, Record, Optional[Record], HostFacts]":
    """This host, its control domain and the facts the need model reads of its dom0."""
    host_ref, host = api.host_by_uuid(probes.this_host_uuid(cfg))
    control = next(iter(api.where("VM", "field \"is_control_domain\" = \"true\" and field \"resident_on\" = %s"
                                  % quote(host_ref)).values()), None)
    backend = probes.backend_params(cfg.dom0.sys_module, probes.read_optional(cfg.dom0.proc_interrupts))
    return host_ref, host, control, gather.host_facts(control, backend)


def with_dom0_vcpus(facts: HostFacts, vcpus: int) -> HostFacts:
    """dom0 with ``vcpus`` vCPUs: the backends' ``max_queues`` follow where they are at their default
    (dom0's online vCPUs: Linux xen-netback's and xen-blkback's module parameters)."""
    def follows(queues: "Optional[int]") -> "Optional[int]":
        return vcpus if queues in (None, facts.dom0_vcpus) else queues

    return facts._replace(dom0_vcpus=vcpus, netback_max_queues=follows(facts.netback_max_queues),
                          blkback_max_queues=follows(facts.blkback_max_queues))


def host_capacity(cfg: Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Dict[str, Any]":
    """How many more VMs like ``vm_uuid`` (or of the shape given) this host admits now, and the remedies."""
    host_ref, host, control, facts = _here(cfg, api)
    profile = gather.profile_of(cfg)
    if args.get("vm_uuid"):
        vm_ref, vm, _ = api.vm_and_control_domain(args["vm_uuid"], host_ref)
        need_model.refuse_non_candidate(vm)
        described = gather.describe(api, {vm_ref: vm})[vm_ref]
        shape = model.shape_of(vm, described.vbds, described.vifs, need_model.effective_domain_type(vm))
    else:
        shape = parse_shape(args)
        vm, vbds, vifs = shape.records()
        described = gather.Described(vm, vbds, vifs, [], None)
    need = gather.predict(facts, profile, described).total
    more_vcpus = None
    wanted = min(shape.vcpus, profile.netback_queue_cap)
    if profile.multi_queue and wanted > facts.dom0_vcpus:
        more_vcpus = (wanted, gather.predict(with_dom0_vcpus(facts, wanted), profile, described).total)
    s = status.read(cfg, api, deadline)
    rooms = [model.Room(XEN_PORTS, s["port_limit"], s["ports_used"], s["promised"], s["margin"]),
             model.Room(LINUX_IRQS, s["irq_limit"], s["irqs_used"], s["promised"], s["margin"])]
    fit = model.how_many(rooms, need)
    return {"host_uuid": host.get("uuid", ""), "host_name": host.get("name_label", ""), "shape": shape.as_json(),
            "need": need, "fits": fit.fits, "ceiling": fit.ceiling,
            "remedies": model.remedies(rooms, need, more_vcpus)}


def needs_here(cfg: Config, api: Xapi, args: "Dict[str, str]", deadline: Deadline) -> "Dict[str, Any]":
    """Every VM of the pool that can start (templates, snapshots and control domains left out):
    what it would need on this host, by uuid."""
    _, host, control, _ = _here(cfg, api)
    vms = api.where("VM", "field \"is_control_domain\" = \"false\" and field \"is_a_template\" = \"false\""
                          " and field \"is_a_snapshot\" = \"false\"")
    backend = probes.backend_params(cfg.dom0.sys_module, probes.read_optional(cfg.dom0.proc_interrupts))
    return {"host_uuid": host.get("uuid", ""), "needs": gather.needs_of(cfg, api, vms, control, backend)}
