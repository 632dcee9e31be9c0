"""Daemon settings: bad values are refused with a message naming the setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tenantvisor.config import ConfigError, Settings, load
from tenantvisor.main import main


def test_flags_override_the_file_and_the_rule_limit_defaults_to_100000(tmp_path: Path) -> None:
    cfg = tmp_path / "tv.yaml"
    cfg.write_text("admin_token: t\nmax-rules-per-vswitch: 5000\nlldp_interval: 2\n")
    assert load(str(cfg), {}).max_rules_per_vswitch == 5000
    assert load(str(cfg), {"max_rules_per_vswitch": 7}).max_rules_per_vswitch == 7
    assert load(None, {"admin_token": "t"}).max_rules_per_vswitch == 100_000


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("max_rules_per_vswitch", 0, "max_rules_per_vswitch must be within"),
        ("max_rules_per_vswitch", "many", "max_rules_per_vswitch must be a whole number"),
        ("lldp_interval", 0.01, "lldp_interval must be within"),
        ("of_listen", "nowhere", "of_listen 'nowhere'"),
    ],
)
def test_bad_settings_are_refused_by_name(setting: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load(None, {"admin_token": "t", setting: value})


def test_an_unknown_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "tv.yaml"
    cfg.write_text("admin_token: t\nmax_rulez: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_rulez'"):
        load(str(cfg), {})


def _file(tmp_path: Path, text: str) -> str:
    cfg = tmp_path / "tv.yaml"
    cfg.write_text("admin_token: t\n" + text)
    return str(cfg)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            'max_rules_per_vswitch: "5000"\n',
            "max_rules_per_vswitch must be a whole number, got '5000'",
        ),
        ("max_rules_per_vswitch: 5000.0\n", "max_rules_per_vswitch must be a whole number"),
        ("max_rules_per_vswitch: true\n", "max_rules_per_vswitch must be a whole number, got True"),
        ('lldp_interval: "2"\n', "lldp_interval must be a number of seconds, got '2'"),
        ("lldp_interval: .inf\n", "lldp_interval must be within 0.1-60 seconds"),
        ("lldp_interval: 61\n", r"lldp_interval must be within 0.1-60 seconds, got 61"),
        ("of_listen: 6633\n", r"of_listen must be a string HOST:PORT or unix:PATH \(quote it"),
        ("admin_token: 1234\n", r"admin_token must be a string \(quote it in YAML\), got 1234"),
        ("log_level: verbose\n", "log_level must be one of debug, info, warning, error"),
        ("api_listen: [127.0.0.1, 80]\n", "api_listen must be a string HOST:PORT, got"),
    ],
)
def test_a_file_value_of_the_wrong_type_or_range_is_refused_naming_key_and_expectation(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(f'config {tmp_path}/tv.yaml: ')}{says}"):
        load(_file(tmp_path, text), {})


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("api_listen", "127.0.0.1:70000", "port 70000 is out of range 0-65535"),
        ("of_listen", "0.0.0.0:65536", "port 65536 is out of range 0-65535"),
        ("of_listen", "0.0.0.0:-1", "expected HOST:PORT"),
        ("api_listen", "127.0.0.1", "expected HOST:PORT"),
        ("api_listen", "127.0.0.1:http", "expected HOST:PORT"),
        ("api_listen", "300.1.1.1:80", "host '300.1.1.1' is not an IP address or host name"),
        ("api_listen", "my host:80", "host 'my host' is not an IP address or host name"),
        ("api_listen", "[fe80::zz]:80", r"expected \[IPv6\]:PORT"),
        ("api_listen", "unix:/run/tv.sock", "expected HOST:PORT"),
        ("of_listen", "unix:", "expected unix:PATH with a path"),
    ],
)
def test_a_bad_listen_address_is_refused_naming_the_setting(
    tmp_path: Path, setting: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=f"^config .*: {setting} '.*': {says}"):
        load(_file(tmp_path, f"{setting}: {value!r}\n"), {})
    with pytest.raises(ConfigError, match=f"^{setting} '.*': {says}"):
        load(None, {"admin_token": "t", setting: value})


@pytest.mark.parametrize(
    ("setting", "value", "host", "port"),
    [
        ("api_listen", ":8080", "0.0.0.0", 8080),
        ("api_listen", "localhost:0", "localhost", 0),
        ("api_listen", "[::1]:8080", "::1", 8080),
        ("of_listen", "[::]:6633", "::", 6633),
        ("of_listen", "switches.example.net.:6633", "switches.example.net.", 6633),
    ],
)
def test_good_listen_addresses_are_accepted(setting: str, value: str, host: str, port: int) -> None:
    s = load(None, {"admin_token": "t", setting: value})
    assert Settings.split(getattr(s, setting), setting) == (host, port)
    if setting == "of_listen":  # what Hypervisor.start splits at its last colon
        assert s.of_listen_address == f"{host}:{port}"


def test_unix_of_listen_is_passed_as_given() -> None:
    s = load(None, {"admin_token": "t", "of_listen": "unix:/run/tv/of.sock"})
    assert s.of_listen_address == "unix:/run/tv/of.sock"


def test_an_unknown_key_is_refused_as_written_even_among_good_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config .*: unknown setting 'lldp-intervall'$"):
        load(_file(tmp_path, "lldp-interval: 2\nlldp-intervall: 3\n"), {})


def test_every_problem_is_reported_on_one_line_flags_first(tmp_path: Path) -> None:
    path = _file(tmp_path, "lldp_interval: fast\nmax_rulez: 1\n")
    with pytest.raises(ConfigError) as exc:
        load(path, {"max_rules_per_vswitch": 0})
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == (
        "max_rules_per_vswitch must be within 1-1000000, got 0; "
        f"config {path}: lldp_interval must be a number of seconds, got 'fast'; "
        "unknown setting 'max_rulez'"
    )


def test_a_flag_replaces_a_bad_file_value(tmp_path: Path) -> None:
    assert (
        load(_file(tmp_path, "lldp_interval: fast\n"), {"lldp_interval": 2.5}).lldp_interval == 2.5
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"admin_token: t\n  bad: [\n", "not valid YAML at line 2, column 6: mapping values"),
        (b"- of_listen\n- api_listen\n", "expected a mapping of settings, got"),
        (b"\xff\xfe\x00", "not a UTF-8 text file"),
        (b"log_level: info\nlog-level: debug\n", "setting 'log_level' given twice"),
    ],
)
def test_a_file_that_is_no_settings_mapping_is_refused(
    tmp_path: Path, content: bytes, says: str
) -> None:
    cfg = tmp_path / "tv.yaml"
    cfg.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{re.escape(f'config {cfg}: ')}{says}"):
        load(str(cfg), {"admin_token": "t"})


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read it: No such file or directory$"):
        load(str(tmp_path / "nope.yaml"), {"admin_token": "t"})


def test_empty_file_means_defaults_and_the_token_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "tv.yaml"
    cfg.write_text("")
    monkeypatch.setenv("TENANTVISOR_ADMIN_TOKEN", "from-env")
    s = load(str(cfg), {})
    assert (s.admin_token, s.of_listen, s.api_listen, s.lldp_interval, s.log_level) == (
        "from-env", "0.0.0.0:6633", "127.0.0.1:8080", 1.0, "info",
    )  # fmt: skip
    monkeypatch.delenv("TENANTVISOR_ADMIN_TOKEN")
    with pytest.raises(ConfigError, match="an admin token is required"):
        load(str(cfg), {})


def test_log_level_is_case_insensitive() -> None:
    assert load(None, {"admin_token": "t", "log_level": "DEBUG"}).log_level == "debug"


def test_serve_prints_one_line_and_exits_2_on_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, "max_rules_per_vswitch: lots\n")
    assert main(["serve", "--config", path]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"tenantvisor: config {path}: max_rules_per_vswitch must be a whole number, got 'lots'\n"
    )


# --- data-plane limits (issue 11) -----------------------------------------------------------
def test_default_limits_come_from_the_file_and_a_flag_replaces_them(tmp_path: Path) -> None:
    """Unset: unlimited.  The YAML mapping sets some kinds; the flag's NAME=N list replaces
    the whole mapping (as any flag replaces its setting)."""
    from tenantvisor.config import parse_limits_flag
    from tenantvisor.virtual.model import Limits

    assert load(None, {"admin_token": "t"}).default_limits.limits == Limits(0, 0, 0, 0)
    path = _file(tmp_path, "default_limits:\n  vport_pps: 2000\n  vlink_kbps: 50000\n")
    assert load(path, {}).default_limits.limits == Limits(2000, 0, 0, 50000)
    flag = parse_limits_flag("vlink_pps=5000, vport-kbps=100")
    assert load(path, {"default_limits": flag}).default_limits.limits == Limits(0, 100, 5000, 0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("default_limits:\n  vport_pps: many\n",
         "default_limits.vport_pps must be a whole number 0-4294967295 (0: unlimited), got 'many'"),
        ("default_limits:\n  vport_pps: -1\n", "default_limits.vport_pps must be a whole number"),
        ("default_limits:\n  vlink_pps: 4294967296\n", "default_limits.vlink_pps must be"),
        ("default_limits:\n  vport_pkts: 1\n", "unknown setting 'default_limits.vport_pkts'"),
        ("default_limits: 5\n", "default_limits must be a mapping of vport_pps"),
        ("default_limits:\n  vport_pps: 10\n  vport_kbps: 10\n",
         "vport_pps and vport_kbps: a meter counts packets or kilobits, not both"),
    ],
)  # fmt: skip
def test_bad_default_limits_are_refused_by_name(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load(_file(tmp_path, text), {})


def test_a_malformed_limits_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--admin-token", "t", "--default-limits", "vport_pps"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


# --- tenant limits (issue 11, control plane) ------------------------------------------------
def test_tenant_limits_come_from_the_file_and_flags_limit_by_limit(tmp_path: Path) -> None:
    path = _file(tmp_path, "tenant_limits:\n  msg_rate: 500\n  vswitches: 8\n")
    s = load(path, {"tenant_limits": {"vswitches": 16}})
    lim = s.tenant_limits
    assert (lim.msg_rate, lim.vswitches, lim.rules) == (500, 16, 1_000_000)
    assert load(None, {"admin_token": "t"}).tenant_limits.msg_rate == 5000


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tenant_limits:\n  msg_rate: 0\n", "tenant_limits.msg_rate must be within 1-2147483648"),
        (
            "tenant_limits:\n  rules: -1\n",
            "tenant_limits.rules must be within 0-2147483648, got -1",
        ),
        ('tenant_limits:\n  rules: "9"\n', "tenant_limits.rules must be a whole number, got '9'"),
        ("tenant_limits:\n  rulez: 9\n", "unknown setting 'tenant_limits.rulez'"),
        ("tenant_limits: 5\n", "tenant_limits must be a mapping of limit names to whole numbers"),
    ],
)
def test_a_bad_limit_is_refused_by_name(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load(_file(tmp_path, text), {})


def test_serve_takes_limits_as_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--admin-token", "t", "--tenant-limits", "msg_rate=lots"]) == 2
    assert "tenant_limits.msg_rate must be a whole number, got 'lots'" in capsys.readouterr().err
    assert main(["serve", "--admin-token", "t", "--tenant-limits", "vswitches=3,msg_rate"]) == 2
    assert "expected NAME=N,... ('msg_rate')" in capsys.readouterr().err
