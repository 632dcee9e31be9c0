"""Daemon settings: defaults, then a YAML file, then flags and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml


class ConfigError(Exception):
    pass


@dataclass
class Settings:
    of_listen: str = "0.0.0.0:6633"
    api_listen: str = "127.0.0.1:8080"
    admin_token: str = ""
    lldp_interval: float = 1.0
    log_level: str = "info"
    max_rules_per_vswitch: int = 100_000

    @staticmethod
    def split(addr: str, what: str) -> tuple[str, int]:
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"{what} {addr!r}: expected HOST:PORT")
        return host or "0.0.0.0", int(port)


def load(path: str | None, overrides: dict[str, object]) -> Settings:
    s = Settings()
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path}: expected a mapping")
        known = {f.name for f in fields(Settings)}
        for key, value in data.items():
            k = str(key).replace("-", "_")
            if k not in known:
                raise ConfigError(f"config {path}: unknown setting {key!r}")
            setattr(s, k, value)
    for k, v in overrides.items():
        if v is not None:
            setattr(s, k, v)
    if not s.admin_token:
        s.admin_token = os.environ.get("TENANTVISOR_ADMIN_TOKEN", "")
    if not s.admin_token:
        raise ConfigError("an admin token is required: --admin-token or TENANTVISOR_ADMIN_TOKEN")
    try:
        s.lldp_interval = float(s.lldp_interval)
    except (TypeError, ValueError):
        raise ConfigError("lldp_interval must be a number of seconds") from None
    if not 0.1 <= s.lldp_interval <= 60:
        raise ConfigError("lldp_interval must be within 0.1-60 seconds")
    try:
        s.max_rules_per_vswitch = int(s.max_rules_per_vswitch)
    except (TypeError, ValueError):
        raise ConfigError("max_rules_per_vswitch must be a whole number") from None
    if not 1 <= s.max_rules_per_vswitch <= 1_000_000:
        raise ConfigError("max_rules_per_vswitch must be within 1-1000000")
    if not str(s.of_listen).startswith("unix:"):
        Settings.split(s.of_listen, "of_listen")
    Settings.split(s.api_listen, "api_listen")
    return s
