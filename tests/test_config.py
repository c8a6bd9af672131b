"""The configuration file: defaults, every key, clear errors naming the key."""

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
    assert (cfg.policy["mode"], cfg.policy["on_error"], cfg.policy["margin"]) == ("enforce", "allow", 64)
    assert cfg.dom0["port_limit"] is None and cfg.xapi["url"] == "local"


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
    assert cfg.dom0["port_limit"] == 1023 and cfg.dom0["irq_limit"] is None
    assert cfg.policy["mode"] == "warn" and cfg.policy["deadline"] == 2.5 and cfg.policy["profile"] == "xs62"
    assert cfg.need["split_event_channels"] is False and cfg.need["ctrl_ring"] == "always"
    assert cfg.log["alerts"] is False


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
    assert config.load().policy["mode"] == "off"


def test_overrides_are_parsed_like_the_file():
    """``with_values`` applies dotted keys and checks them."""
    cfg = config.defaults().with_values({"xapi.url": "http://127.0.0.1:1/"})
    assert cfg.xapi["url"] == "http://127.0.0.1:1/"
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
    assert cfg.xapi["url"] == "https://[::1]:443/" and cfg.policy["deadline"] == 3600.0


def test_a_config_that_parses_is_kept_and_used_when_a_later_one_does_not(tmp_path):
    """load_kept keeps a copy of each configuration that parses in the state directory; a later file
    that does not parse gives that copy and the error, never the error alone."""
    ledger_path = str(tmp_path / "state" / "ledger.json")
    path = write(tmp_path, "[policy]\nmode = warn\n[ledger]\npath = %s\n" % ledger_path)
    cfg, error = config.load_kept(path)
    assert (cfg.policy["mode"], error) == ("warn", None)
    path = write(tmp_path, "[policy]\nmode = enforse\n[ledger]\npath = %s\n" % ledger_path)
    cfg, error = config.load_kept(path)
    assert error is not None and "[policy] mode" in error.message
    assert cfg.policy["mode"] == "warn" and "the last configuration that parsed" in cfg.source


def test_a_config_that_never_parsed_gives_the_defaults_and_the_error(tmp_path):
    """No copy of a configuration that parsed: the defaults for the key that does not parse, the file's
    other keys, and the error to signal."""
    ledger_path = str(tmp_path / "state" / "ledger.json")
    path = write(tmp_path, "[policy]\nbypass = not-a-uuid\n[ledger]\npath = %s\n" % ledger_path)
    cfg, error = config.load_kept(path)
    assert error is not None and "not a VM uuid" in error.message
    assert cfg.policy["mode"] == "enforce" and cfg.policy["bypass"] == () and cfg.ledger["path"] == ledger_path
    assert cfg.source.startswith("the defaults for what")
