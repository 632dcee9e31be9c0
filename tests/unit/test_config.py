"""Daemon settings: bad values are refused with a message naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantvisor.config import ConfigError, load


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
