"""The configuration file: INI (so that Python 3.6 reads it), every key typed and documented, read
into a typed tuple per section (``cfg.policy.deadline``).

A missing default file means the defaults; a file named explicitly must exist. Unknown
sections and keys are errors, so that a typo never silently leaves a default in force.
"""

import configparser
import os
import re
import urllib.parse

from .errors import ConfigError
from .model.profiles import PROFILES
from .namedtuple import NamedTuple

TYPE_CHECKING = False  # mypy takes it as True; why: xsguard/namedtuple.py
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

DEFAULT_PATH = "/etc/xsguard/xsguard.conf"
LSEVTCHN_CANDIDATES = ("/usr/libexec/xen/bin", "/usr/lib/xen/bin", "/usr/lib/xen-*/bin")


def _choice(*allowed: str) -> "Callable[[str], str]":
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError("expected one of %s" % ", ".join(allowed))
        return text

    return parse


def _int_min(minimum: int) -> "Callable[[str], int]":
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError("must be at least %d" % minimum)
        return value

    return parse


MAX_SECONDS = 3600.0  # no wait or duration xsguard keeps is longer than an hour


def _positive_float_max(maximum: float) -> "Callable[[str], float]":
    def parse(text: str) -> float:
        value = float(text)
        if not 0 < value <= maximum:  # also refuses inf and nan
            raise ValueError("must be a number of seconds above 0 and at most %d" % maximum)
        return value

    return parse


_positive_float = _positive_float_max(MAX_SECONDS)
bounded_seconds = _positive_float  # a number of seconds above 0 and at most MAX_SECONDS, or ValueError


def _auto(parse: "Callable[[str], Any]") -> "Callable[[str], Any]":
    def parse_auto(text: str) -> "Any":
        return None if text == "auto" else parse(text)

    return parse_auto


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueError("expected yes or no")


def _uuids(text: str) -> "Tuple[str, ...]":
    found = tuple(u.strip().lower() for u in text.replace(",", " ").split())
    for uuid in found:
        if not UUID.match(uuid):
            raise ValueError("%r is not a VM uuid" % uuid[:60])
    return found


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")  # a VM's, lower case


def _path(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


def _url(text: str) -> str:
    if text != "local" and not text.startswith(("http://", "https://", "unix:///")):
        raise ValueError("expected 'local', unix:///path, or an http:// or https:// URL")
    if text.startswith(("http://", "https://")):
        try:
            parts = urllib.parse.urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a port out of range
        except ValueError as exc:
            raise ValueError("not a URL: %s" % exc)
        if not parts.hostname:
            raise ValueError("the URL names no host")
    return text


# (section, key, default, parser, what it means)
SCHEMA: "List[Tuple[str, str, str, Callable[[str], Any], str]]" = [
    ("dom0", "lsevtchn", "auto", _path,
     "path of lsevtchn; auto tries " + ", ".join(LSEVTCHN_CANDIDATES)),
    ("dom0", "probe_timeout", "2", _positive_float, "seconds lsevtchn may run"),
    ("dom0", "proc_interrupts", "/proc/interrupts", _path, "dom0's /proc/interrupts"),
    ("dom0", "kernel_log", "/var/log/kern.log", _path,
     "kernel log holding the boot lines (ABI, NR_IRQS)"),
    ("dom0", "kernel_ring", "/dev/kmsg", _path,
     "the kernel's ring buffer, read when no kernel log holds this boot's lines"),
    ("dom0", "proc_stat", "/proc/stat", _path,
     "its btime is when this boot began: older kernel log lines are an earlier boot's"),
    ("dom0", "cmdline", "/proc/cmdline", _path, "dom0's kernel command line"),
    ("dom0", "boot_id", "/proc/sys/kernel/random/boot_id", _path,
     "this boot's id: what the kernel log said is kept until it changes"),
    ("dom0", "hypervisor", "/sys/hypervisor", _path, "sysfs directory with version/major, minor"),
    ("dom0", "sys_module", "/sys/module", _path,
     "sysfs directory with xen_netback and xen_blkback parameters"),
    ("dom0", "inventory", "/etc/xensource-inventory", _path,
     "file naming this host (INSTALLATION_UUID)"),
    ("dom0", "port_limit", "auto", _auto(_int_min(1)),
     "Xen port limit; auto detects the ABI (131071 FIFO, 4095 2-level)"),
    ("dom0", "irq_limit", "auto", _auto(_int_min(1)),
     "Linux IRQ limit; auto reads NR_IRQS from the kernel log (+8196)"),
    ("policy", "mode", "enforce", _choice("enforce", "warn", "off"),
     "enforce refuses; warn logs and lets the start go on (exit 1); off only logs"),
    ("policy", "on_error", "allow", _choice("allow", "deny"),
     "when xsguard itself fails: allow the start (exit 1) or deny it (exit 2)"),
    ("policy", "margin", "64", _int_min(0), "ports and IRQs kept free for dom0 itself"),
    ("policy", "deadline", "5", _positive_float,
     "seconds the hook may take in all, retries and lock waits included"),
    ("policy", "profile", "xs8", _choice(*sorted(PROFILES)), "per-device figures: xs8, xs62, xs61"),
    ("policy", "reboot", "admit", _choice("admit", "check"),
     "a reboot of a VM running here: admit (charged; over a ceiling it is logged, counted and alerted,"
     " never halted) or check (refused like a start: the VM is left halted)"),
    ("policy", "bypass", "", _uuids,
     "uuids of VMs whose starts are not checked (still charged); only root in dom0 sets this"),
    ("need", "vbd_backend", "auto", _auto(_choice("tapdisk", "blkback")),
     "disk backend: tapdisk (1 ring per VBD) or blkback (1 per queue); auto: the one dom0 runs"),
    ("need", "rings_per_vbd", "auto", _auto(_int_min(0)), "fixed rings per VBD"),
    ("need", "netback_queue_cap", "auto", _auto(_int_min(1)), "cap on netback queues per VIF"),
    ("need", "split_event_channels", "auto", _auto(_bool),
     "2 ports per netback queue (yes) or 1 (no); auto asks dom0"),
    ("need", "ctrl_ring", "auto", _auto(_choice("always", "never")),
     "a control ring per VIF; auto: for Windows guests"),
    ("need", "extra_per_vm", "0", _int_min(0), "ports added to every VM's need"),
    ("need", "vif_queues", "negotiated", _choice("negotiated", "backend_max"),
     "netback queues charged per VIF: negotiated (min(vCPUs, 8, dom0's max_queues)) or backend_max"
     " (all dom0's netback grants: guests that pick their own count are not trusted)"),
    ("need", "vbd_rings", "negotiated", _choice("negotiated", "backend_max"),
     "blkback rings charged per VBD: negotiated (min(vCPUs, dom0's max_queues)) or backend_max"
     " (all blkback grants); tapdisk3 serves one ring whatever"),
    ("xapi", "url", "local", _url,
     "local (xapi's UNIX socket /var/lib/xcp/xapi), unix:///other/socket, or an http(s):// URL"),
    ("xapi", "ca_file", "", str,
     "PEM file of the certificate(s) to trust for an https:// URL besides the system's (the pool's own)"),
    ("ledger", "path", "/run/xsguard/ledger.json", _path,
     "the admitted-VM ledger (per-boot: on a tmpfs, so that a full /var cannot stop a charge); its directory"
     " holds xsguard's other state"),
    ("ledger", "ttl", "600", _positive_float,
     "seconds an admitted start that never produced a domain stays charged"),
    ("log", "file", "/var/log/xsguard/decisions.log", _path, "the JSON-lines decision log"),
    ("log", "syslog", "yes", _bool, "a line per refusal to syslog"),
    ("log", "syslog_socket", "/dev/log", _path, "the syslog socket dom0's syslog daemon reads"),
    ("log", "alerts", "yes", _bool, "a xapi message (XenCenter / Xen Orchestra) per refusal"),
    ("log", "alert_interval", "3600", _positive_float_max(7 * 86400), "seconds between two alerts for one VM"),
    ("rrdd", "socket", "/var/xapi/xcp-rrdd", _path, "xcp-rrdd's socket, where xsguard-rrdd registers"),
    ("rrdd", "period", "5", _positive_float,
     "seconds between two readings of xcp-rrdd (Five_Seconds); only a simulated xcp-rrdd reads faster"),
]


# A tuple per section, a field per key typed as its parser gives it (None where a key takes auto): what
# mypy checks every use against. SCHEMA's keys and the fields are the same (defaults() builds each
# section from SCHEMA's keys; tests/test_config.py checks the keys and each value's type).


class Dom0Section(NamedTuple):
    """``[dom0]``: where dom0's figures are read, and its ceilings when set."""

    lsevtchn: str  # a path, or "auto"
    probe_timeout: float
    proc_interrupts: str
    kernel_log: str
    kernel_ring: str
    proc_stat: str
    cmdline: str
    boot_id: str
    hypervisor: str
    sys_module: str
    inventory: str
    port_limit: "Optional[int]"  # None: auto
    irq_limit: "Optional[int]"  # None: auto


class PolicySection(NamedTuple):
    """``[policy]``: what a decision does."""

    mode: str
    on_error: str
    margin: int
    deadline: float
    profile: str  # a name in model.profiles.PROFILES
    reboot: str
    bypass: "Tuple[str, ...]"  # VM uuids, lower case


class NeedSection(NamedTuple):
    """``[need]``: the site's per-device figures; each is a field of ``model.profiles.Profile``."""

    vbd_backend: "Optional[str]"  # None: auto
    rings_per_vbd: "Optional[int]"  # None: auto
    netback_queue_cap: "Optional[int]"  # None: auto
    split_event_channels: "Optional[bool]"  # None: auto
    ctrl_ring: "Optional[str]"  # None: auto
    extra_per_vm: int
    vif_queues: str
    vbd_rings: str


class XapiSection(NamedTuple):
    """``[xapi]``: where xapi answers."""

    url: str
    ca_file: str  # empty: the system's certificates only


class LedgerSection(NamedTuple):
    """``[ledger]``: the admitted-VM ledger."""

    path: str
    ttl: float


class LogSection(NamedTuple):
    """``[log]``: the decision log, syslog and alerts."""

    file: str
    syslog: bool
    syslog_socket: str
    alerts: bool
    alert_interval: float


class RrddSection(NamedTuple):
    """``[rrdd]``: xcp-rrdd, for xsguard-rrdd."""

    socket: str
    period: float


class Config(NamedTuple):
    """Parsed configuration, a typed tuple per section (a field per key of ``SCHEMA``); ``source``
    says which file (or the defaults)."""

    dom0: Dom0Section
    policy: PolicySection
    need: NeedSection
    xapi: XapiSection
    ledger: LedgerSection
    log: LogSection
    rrdd: RrddSection
    source: str

    def with_values(self, overrides: "Dict[str, str]") -> "Config":
        """A copy with ``{"section.key": "text"}`` applied, parsed as a file's values are."""
        parsed = _parse_items(
            [(dotted.split(".", 1)[0], dotted.split(".", 1)[-1], text) for dotted, text in overrides.items()],
            "overrides",
        )
        return _merged(self, parsed, self.source)


# each section's name and its tuple, in the file's order: Config's fields but its source
SECTIONS: "Dict[str, Any]" = {name: Config.__annotations__[name] for name in Config._fields[:-1]}
_KNOWN = {(s, k): (d, p) for s, k, d, p, _ in SCHEMA}


def _parse_items(items: "List[Tuple[str, str, str]]", where: str) -> "Dict[str, Dict[str, Any]]":
    """``(section, key, text)`` items parsed, by section (ConfigError naming an unknown key or bad value)."""
    parsed: Dict[str, Dict[str, Any]] = {s: {} for s in SECTIONS}
    for section, key, text in items:
        if (section, key) not in _KNOWN:
            raise ConfigError("%s: unknown key [%s] %s" % (where, section, key), section, key)
        parser = _KNOWN[(section, key)][1]
        try:
            parsed[section][key] = parser(text.strip())
        except ValueError as exc:
            raise ConfigError(
                "%s: bad value for [%s] %s: %r (%s)" % (where, section, key, text, exc), section, key
            )
    return parsed


def _merged(base: Config, parsed: "Dict[str, Dict[str, Any]]", source: str) -> Config:
    """``base`` with the parsed values in place of its own, from ``source``."""
    return base._replace(source=source, **{s: getattr(base, s)._replace(**v) for s, v in parsed.items() if v})


def defaults() -> Config:
    """The configuration with every key at its default."""
    parsed = _parse_items([(s, k, d) for s, k, d, _, _ in SCHEMA], "defaults")
    return Config(source="defaults", **{s: kind(**parsed[s]) for s, kind in SECTIONS.items()})


def load(path: "Optional[str]" = None) -> Config:
    """Read ``path`` (else $XSGUARD_CONFIG, else the default file, which may be absent)."""
    return _read(path)[0]


def _target(path: "Optional[str]") -> "Tuple[str, bool]":
    explicit = path or os.environ.get("XSGUARD_CONFIG")
    return explicit or DEFAULT_PATH, bool(explicit)


def _read(path: "Optional[str]") -> "Tuple[Config, Optional[str]]":
    """The configuration and the file's text (None: no file, the defaults)."""
    target, explicit = _target(path)
    try:
        with open(target, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        if explicit:
            raise ConfigError("config file %s does not exist" % target, target)
        return defaults(), None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("cannot read config file %s: %s" % (target, exc), target)
    return parse_text(text, target), text


def parse_text(text: str, target: str) -> Config:
    """A configuration file's text, parsed (ConfigError naming ``target`` and what is wrong)."""
    base = defaults()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=target)
    except configparser.Error as exc:
        raise ConfigError("cannot read config file %s: %s" % (target, exc), target)
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError("%s: unknown section [%s]" % (target, section), section)
    items = [(s, k, v) for s in parser.sections() for k, v in parser.items(s, raw=True)]
    return _merged(base, _parse_items(items, target), target)


LAST_GOOD = "config.last-good"  # in the state directory: the last configuration file that parsed


def load_or_last_good(path: "Optional[str]" = None) -> "Tuple[Config, Optional[ConfigError]]":
    """The configuration, a copy of it kept in the state directory whenever it parses; when it does
    not, the last copy that did (else the defaults) with the error, for the caller to signal.

    A configuration error must never switch the guard off: a hook decides with what it has.
    """
    try:
        cfg, text = _read(path)
    except ConfigError as exc:
        return _last_good(path), exc
    try:
        _keep(cfg, text or "")
    except OSError:
        pass  # the copy is a fallback; the decision does not depend on it
    return cfg, None


def _keep(cfg: Config, text: str) -> None:
    from . import state

    target = state.path(cfg, LAST_GOOD)
    try:
        with open(target, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    except (OSError, UnicodeDecodeError):
        pass
    state.write_atomic(target, text.encode("utf-8"))


def _last_good(path: "Optional[str]") -> Config:
    """The copy kept in the state directory the broken file names (its ``[ledger] path``, when that
    key reads), else the defaults with every key of the broken file that parses on its own."""
    from . import state

    target, _ = _target(path)
    salvaged = _salvage(target)
    copy = os.path.join(state.directory(salvaged), LAST_GOOD)
    try:
        state.check_directory(os.path.dirname(copy))
        with open(copy, encoding="utf-8") as handle:
            last_good = parse_text(handle.read(), copy)
    except (OSError, UnicodeDecodeError, ConfigError):
        return salvaged._replace(source="the defaults for what %s gets wrong (no configuration that parsed is kept"
                                 " at %s)" % (target, copy))
    return last_good._replace(source="%s (the last configuration that parsed)" % copy)


def _salvage(target: str) -> Config:
    """The defaults with each key of ``target`` that parses on its own."""
    salvaged = defaults()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with open(target, encoding="utf-8") as handle:
            parser.read_file(handle, source=target)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return salvaged
    for section in parser.sections():
        for key, text in parser.items(section, raw=True):
            try:
                salvaged = _merged(salvaged, _parse_items([(section, key, text)], target), target)
            except ConfigError:
                continue
    return salvaged._replace(source=target)
