"""XenAPI-shaped records for the pure tests: what the XML-RPC client returns (ints as strings)."""

from typing import Any, Dict, List


def vm(vcpus: int = 1, hvm: bool = False, firmware: str = "bios", windows: bool = False,
       **extra: Any) -> Dict[str, Any]:
    record = {
        "uuid": "6f1c6d3e-1b8a-4c43-9d4e-0a7b2a1c9e11",
        "name_label": "guest",
        "is_a_template": False,
        "is_a_snapshot": False,
        "is_control_domain": False,
        "domain_type": "hvm" if hvm else "pv",
        "HVM_boot_policy": "BIOS order" if hvm else "",
        "HVM_boot_params": {"firmware": firmware} if hvm else {},
        "VCPUs_max": str(vcpus),
        "VCPUs_at_startup": str(vcpus),
        "platform": {"viridian": "true", "device_id": "0002"} if windows else {},
        "other_config": {},
    }
    record.update(extra)
    return record


def disks(n: int) -> List[Dict[str, Any]]:
    return [{"type": "Disk", "empty": False, "userdevice": str(i)} for i in range(n)]


def cd(empty: bool = True, userdevice: str = "3") -> Dict[str, Any]:
    return {"type": "CD", "empty": empty, "userdevice": userdevice}


def nics(n: int) -> List[Dict[str, Any]]:
    return [{"device": str(i)} for i in range(n)]
