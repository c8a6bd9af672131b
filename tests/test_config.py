"""The configuration file: defaults, every key, clear errors naming the key."""

import typing

import pytest

from xsguard import config
from xsguard.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "xsguard.conf"
    path.write_text(text)
    return str(path)


def test_defaults_when_the_default_file_is_absent(monkeypatch):
    """No file at the default path: the documented defaults."""
    monkeypatch.delenv("XSGUARD_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_PATH", "/nonexistent/xsguard.conf")
    cfg = config.load()
    assert cfg.source == "defaults"
    assert (cfg.policy.mode, cfg.policy.on_error, cfg.policy.margin) == ("enforce", "allow", 64)
    assert cfg.dom0.port_limit is None and cfg.xapi.url == "local"


def test_every_key_is_typed(tmp_path):
    """Numbers, choices, auto and booleans are parsed."""
    cfg = config.load(write(tmp_path, """
[dom0]
port_limit = 1023
irq_limit = auto
[policy]
mode = warn
margin = 0
deadline = 2.5
profile = xs62
[need]
split_event_channels = no
ctrl_ring = always
[log]
alerts = off
"""))
    assert cfg.dom0.port_limit == 1023 and cfg.dom0.irq_limit is None
    assert cfg.policy.mode == "warn" and cfg.policy.deadline == 2.5 and cfg.policy.profile == "xs62"
    assert cfg.need.split_event_channels is False and cfg.need.ctrl_ring == "always"
    assert cfg.log.alerts is False


@pytest.mark.parametrize("text,named", [
    ("[policy]\nmode = strict\n", "[policy] mode"),
    ("[policy]\nmargin = -1\n", "[policy] margin"),
    ("[dom0]\nport_limit = lots\n", "[dom0] port_limit"),
    ("[policy]\ndeadline = 0\n", "[policy] deadline"),
    ("[xapi]\nurl = ftp://x\n", "[xapi] url"),
    ("[policy]\nmods = warn\n", "unknown key [policy] mods"),
    ("[polcy]\nmode = warn\n", "unknown section [polcy]"),
    ("not an ini file\n", "cannot read"),
])
def test_bad_values_name_the_key(tmp_path, text, named):
    """Every bad value is an error that names its key."""
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert named in info.value.message


def test_named_file_must_exist(tmp_path):
    """A file named explicitly (or by XSGUARD_CONFIG) that is missing is an error."""
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.conf"))


def test_environment_names_the_file(tmp_path, monkeypatch):
    """XSGUARD_CONFIG names the file when no path is given."""
    monkeypatch.setenv("XSGUARD_CONFIG", write(tmp_path, "[policy]\nmode = off\n"))
    assert config.load().policy.mode == "off"


def test_overrides_are_parsed_like_the_file():
    """``with_values`` applies dotted keys and checks them."""
    cfg = config.defaults().with_values({"xapi.url": "http://127.0.0.1:1/"})
    assert cfg.xapi.url == "http://127.0.0.1:1/"
    with pytest.raises(ConfigError):
        config.defaults().with_values({"xapi.url": "nonsense"})


def test_shipped_config_lists_every_key_and_parses():
    """packaging/xsguard.conf shows every key at its default, and parses once uncommented."""
    import os
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "packaging", "xsguard.conf")
    with open(path) as shipped:
        text = shipped.read()
    shown = set(re.findall(r"^# (\w+) =(?: |$)", text, re.M))
    assert shown == {key for _, key, _, _, _ in config.SCHEMA}
    uncommented = re.sub(r"^# (\w+ =(?: .*)?)$", r"\1", text, flags=re.M)
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
        handle.write(uncommented)
    try:
        assert config.load(handle.name)._replace(source="defaults") == config.defaults()
    finally:
        os.unlink(handle.name)


def test_queue_policies_parse_and_reach_the_profile(tmp_path):
    """[need] vif_queues and vbd_rings take negotiated or backend_max and are profile fields."""
    from xsguard.gather import profile_of

    cfg = config.load(write(tmp_path, "[need]\nvif_queues = backend_max\nvbd_rings = backend_max\n"))
    profile = profile_of(cfg)
    assert (profile.vif_queues, profile.vbd_rings) == ("backend_max", "backend_max")
    assert profile_of(config.defaults()).vif_queues == "negotiated"


def test_bad_queue_policy_names_the_key(tmp_path):
    """A queue policy other than the two is an error naming the key."""
    with pytest.raises(ConfigError, match=r"\[need\] vif_queues"):
        config.load(write(tmp_path, "[need]\nvif_queues = all\n"))


@pytest.mark.parametrize("value", ["1e10", "inf", "nan", "3601", "-1", "0"])
def test_a_deadline_out_of_bounds_is_refused_naming_the_key(tmp_path, value):
    """Infinite, NaN or longer-than-an-hour deadlines would break every decision: refused."""
    with pytest.raises(ConfigError) as raised:
        config.load(write(tmp_path, "[policy]\ndeadline = %s\n" % value))
    assert "[policy] deadline" in raised.value.message


@pytest.mark.parametrize("key", ["[dom0]\nprobe_timeout", "[ledger]\nttl", "[log]\nalert_interval"])
def test_every_duration_is_finite(tmp_path, key):
    """No duration key takes infinity."""
    with pytest.raises(ConfigError) as raised:
        config.load(write(tmp_path, "%s = inf\n" % key))
    assert key.split("\n")[1] in raised.value.message


@pytest.mark.parametrize("url", ["http://[", "https://host:99999/", "http:///nohost"])
def test_an_unparseable_xapi_url_is_refused_naming_the_key(tmp_path, url):
    """A URL that urllib cannot split is a config error, not a failure of every start."""
    with pytest.raises(ConfigError) as raised:
        config.load(write(tmp_path, "[xapi]\nurl = %s\n" % url))
    assert "[xapi] url" in raised.value.message


def test_a_sane_url_and_bounded_deadline_still_load(tmp_path):
    """The bounds leave ordinary values alone."""
    cfg = config.load(write(tmp_path, "[xapi]\nurl = https://[::1]:443/\n[policy]\ndeadline = 3600\n"))
    assert cfg.xapi.url == "https://[::1]:443/" and cfg.policy.deadline == 3600.0


def test_a_config_that_parses_is_kept_and_used_when_a_later_one_does_not(tmp_path):
    """load_or_last_good keeps a copy of each configuration that parses in the state directory; a later file
    that does not parse gives that copy and the error, never the error alone."""
    ledger_path = str(tmp_path / "state" / "ledger.json")
    path = write(tmp_path, "[policy]\nmode = warn\n[ledger]\npath = %s\n" % ledger_path)
    cfg, error = config.load_or_last_good(path)
    assert (cfg.policy.mode, error) == ("warn", None)
    path = write(tmp_path, "[policy]\nmode = enforse\n[ledger]\npath = %s\n" % ledger_path)
    cfg, error = config.load_or_last_good(path)
    assert error is not None and "[policy] mode" in error.message
    assert cfg.policy.mode == "warn" and "the last configuration that parsed" in cfg.source


def test_a_config_that_never_parsed_gives_the_defaults_and_the_error(tmp_path):
    """No copy of a configuration that parsed: the defaults for the key that does not parse, the file's
    other keys, and the error to signal."""
    ledger_path = str(tmp_path / "state" / "ledger.json")
    path = write(tmp_path, "[policy]\nbypass = not-a-uuid\n[ledger]\npath = %s\n" % ledger_path)
    cfg, error = config.load_or_last_good(path)
    assert error is not None and "not a VM uuid" in error.message
    assert cfg.policy.mode == "enforce" and cfg.policy.bypass == () and cfg.ledger.path == ledger_path
    assert cfg.source.startswith("the defaults for what")


# a valid value other than the default for every key, to check what each parser gives beside the default
OTHER = {"dom0.lsevtchn": "/usr/bin/lsevtchn", "dom0.probe_timeout": "0.5", "dom0.proc_interrupts": "/p/interrupts",
         "dom0.kernel_log": "/k.log", "dom0.kernel_ring": "/k.ring", "dom0.proc_stat": "/p/stat",
         "dom0.cmdline": "/p/cmdline", "dom0.boot_id": "/p/boot_id", "dom0.hypervisor": "/s/hypervisor",
         "dom0.sys_module": "/s/module", "dom0.inventory": "/e/inventory", "dom0.port_limit": "1023",
         "dom0.irq_limit": "41220", "policy.mode": "warn", "policy.on_error": "deny", "policy.margin": "0",
         "policy.deadline": "3", "policy.profile": "xs61", "policy.reboot": "check",
         "policy.bypass": "0A0A0A0A-1B8A-4C43-9D4E-0A7B2A1C9E11, 0a0a0a0a-1b8a-4c43-9d4e-0a7b2a1c9e12",
         "need.vbd_backend": "blkback", "need.rings_per_vbd": "0", "need.netback_queue_cap": "2",
         "need.split_event_channels": "no", "need.ctrl_ring": "never", "need.extra_per_vm": "3",
         "need.vif_queues": "backend_max", "need.vbd_rings": "backend_max", "xapi.url": "https://pool:443/",
         "xapi.ca_file": "/e/pool.pem", "ledger.path": "/r/ledger.json", "ledger.ttl": "60", "log.file": "/l/d.log",
         "log.syslog": "no", "log.syslog_socket": "/d/log", "log.alerts": "off", "log.alert_interval": "86400",
         "rrdd.socket": "/v/rrdd", "rrdd.period": "1"}


def conforms(value, hint):
    """Whether ``value`` is of the annotated type ``hint`` (exactly: a bool is no int, an int no float)."""
    if typing.get_origin(hint) is typing.Union:
        return any(conforms(value, arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        item, ellipsis = typing.get_args(hint)
        return ellipsis is Ellipsis and type(value) is tuple and all(conforms(v, item) for v in value)
    return type(value) is (type(None) if hint is None else hint)


def test_the_schema_and_the_section_types_have_the_same_keys():
    """Every key of SCHEMA is a field of its section's tuple and every field a key, once each, and the
    sections are Config's fields but ``source``: a key added to one and not the other fails here."""
    keys = [(s, k) for s, k, _, _, _ in config.SCHEMA]
    assert len(set(keys)) == len(keys)
    assert set(keys) == {(s, f) for s, kind in config.SECTIONS.items() for f in kind._fields}
    assert tuple(config.SECTIONS) + ("source",) == config.Config._fields


@pytest.mark.parametrize("key", sorted(OTHER))
def test_every_value_has_its_fields_type(key):
    """A key's default and a valid value other than it each parse to the type its field declares, which
    is what mypy checks every use against."""
    section, name = key.split(".")
    hint = typing.get_type_hints(config.SECTIONS[section], localns=vars(typing))[name]  # string annotations
    assert conforms(getattr(getattr(config.defaults(), section), name), hint)
    other = getattr(getattr(config.defaults().with_values({key: OTHER[key]}), section), name)
    assert other != getattr(getattr(config.defaults(), section), name) and conforms(other, hint)


def test_every_key_has_another_value_to_type_check():
    """OTHER above covers the schema exactly."""
    assert sorted(OTHER) == sorted("%s.%s" % (s, k) for s, k, _, _, _ in config.SCHEMA)


def test_the_type_check_tells_types_apart():
    """``conforms`` refuses what a typed field must not hold: else the test above could not fail."""
    Optional, Tuple = typing.Optional, typing.Tuple
    assert conforms(None, Optional[int]) and conforms(3, Optional[int]) and conforms(False, Optional[bool])
    assert not conforms(True, Optional[int]) and not conforms(3.0, int) and not conforms(3, float)
    assert not conforms("x", Optional[int]) and not conforms(None, str)
    assert conforms(("a",), Tuple[str, ...]) and conforms((), Tuple[str, ...])
    assert not conforms(["a"], Tuple[str, ...]) and not conforms((1,), Tuple[str, ...])


def test_a_section_is_replaced_whole_and_typed():
    """``with_values`` changes only the keys it names; the file's other keys and ``source`` stay."""
    base = config.parse_text("[policy]\nmode = warn\n", "/etc/xsguard/xsguard.conf")
    cfg = base.with_values({"policy.margin": "8", "log.alerts": "no"})
    assert (cfg.policy.mode, cfg.policy.margin, cfg.log.alerts, cfg.log.syslog) == ("warn", 8, False, True)
    assert cfg.source == "/etc/xsguard/xsguard.conf" and cfg.dom0 is base.dom0


def test_the_readme_lists_every_key_with_its_default():
    """README.md's configuration table has a row per key of the schema, with its default ("(empty)"
    for none), and no row for a key that is not one."""
    import os
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")
    with open(path, encoding="utf-8") as handle:
        rows = re.findall(r"^\| `\[(\w+)\] (\w+)` \| (`[^`|]*`|\(empty\)) \|", handle.read(), re.M)
    assert sorted(rows) == sorted((s, k, "`%s`" % d if d else "(empty)") for s, k, d, _, _ in config.SCHEMA)
