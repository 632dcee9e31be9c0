"""Daemon settings: defaults, then a YAML file, then flags and the environment.

One pydantic model checks them all, as the API checks its requests (api/schemas.py): strict
types (YAML `"5000"` or `true` where a number belongs is a mistake to report, not to guess
at), bounded numbers, checked addresses, and no unknown keys, so a typo never falls back to a
default silently.  Every problem becomes one `ConfigError` line naming the setting, what it
expects and what it got; `tenantvisor serve` prints it and exits 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tenantvisor.quotas import QUOTAS, TenantLimits
from tenantvisor.virtual.model import MAX_LIMIT, Limits

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_STATE_DIR = "/var/lib/tenantvisor"
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
# What each setting expects, as the error message says it ("lldp_interval must be ...").
_TYPE = {
    "of_listen": "a string HOST:PORT or unix:PATH",
    "api_listen": "a string HOST:PORT",
    "admin_token": "a string",
    "lldp_interval": "a number of seconds",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "max_rules_per_vswitch": "a whole number",
    "state_dir": "a directory path",
    "db": "none, or OVSDB remotes unix:PATH / tcp:IP:PORT, comma-separated",
    "instance": "a name of 1-64 letters, digits, '.', '_' or '-'",
    "lease": "a number of seconds",
    "default_limits": "a mapping of vport_pps, vport_kbps, vlink_pps, vlink_kbps",
    "tenant_limits": "a mapping of limit names to whole numbers",
}
_LIMIT = f"a whole number 0-{MAX_LIMIT} (0: unlimited)"
_RANGE = {
    "lldp_interval": "within 0.1-60 seconds",
    "max_rules_per_vswitch": "within 1-1000000",
    "lease": "within 1-60 seconds",
}


class DefaultLimits(BaseModel):
    """The admin's data-plane limits for every network (README, "Noisy neighbours"): per
    edge vport (what its hosts send into the slice) and per vlink direction, in packets/s
    or kb/s (one unit per kind: a meter has one), 0 unlimited.  A network's override,
    set through the API, replaces a kind of them."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    vport_pps: int = Field(default=0, ge=0, le=MAX_LIMIT)
    vport_kbps: int = Field(default=0, ge=0, le=MAX_LIMIT)
    vlink_pps: int = Field(default=0, ge=0, le=MAX_LIMIT)
    vlink_kbps: int = Field(default=0, ge=0, le=MAX_LIMIT)

    @model_validator(mode="after")
    def _one_unit(self) -> DefaultLimits:
        why = self.limits.problem()
        if why is not None:
            raise ValueError(f"default_limits: {why}")
        return self

    @property
    def limits(self) -> Limits:
        return Limits(self.vport_pps, self.vport_kbps, self.vlink_pps, self.vlink_kbps)


def parse_limits_flag(text: str) -> dict[str, object]:
    """`--default-limits vport_pps=2000,vlink_pps=5000` as a mapping (values that are not
    whole numbers are kept as text, for the settings' check to name)."""
    out: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"--default-limits {text!r}: expected NAME=VALUE,... ({part!r})")
        v = value.strip()
        out[name.strip().replace("-", "_")] = int(v) if v.isascii() and v.isdigit() else v
    return out


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming it."""


def _split(addr: str, what: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); an empty host is every address, an IPv6 host may be in
    brackets; the host must be an IP address or a DNS name, the port 0-65535."""
    host, sep, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host):
            raise ConfigError(f"{what} {addr!r}: expected [IPv6]:PORT")
    if not sep or not port.isascii() or not port.isdigit():
        raise ConfigError(f"{what} {addr!r}: expected HOST:PORT")
    if not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} {addr!r}: port {int(port)} is out of range 0-65535")
    if host and not _is_ip(host) and not _is_dns_name(host):
        raise ConfigError(f"{what} {addr!r}: host {host!r} is not an IP address or host name")
    return host or "0.0.0.0", int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_dns_name(host: str) -> bool:
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        return False
    return not host.rstrip(".").replace(".", "").isdigit()  # 300.1.1.1 is no name either


class Settings(BaseModel):
    """What `tenantvisor serve` runs with (README, "Running the hypervisor")."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    of_listen: str = Field(default="0.0.0.0:6633", description="HOST:PORT or unix:PATH")
    api_listen: str = Field(default="127.0.0.1:8080", description="HOST:PORT")
    admin_token: str = ""
    lldp_interval: float = Field(default=1.0, ge=0.1, le=60, allow_inf_nan=False)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_rules_per_vswitch: int = Field(default=100_000, ge=1, le=1_000_000)
    # Where intent is kept: a private ovsdb-server on DIR/tenantvisor.db (embedded), or an
    # existing server / Raft cluster (`db`), or nowhere (`db: none`: forgotten on restart).
    state_dir: str = Field(default=DEFAULT_STATE_DIR, min_length=1)
    db: str | None = None
    # Several instances over one store (a Raft cluster): this one's name, unique among them,
    # and how long the others wait after its last lease renewal before taking its networks.
    instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    lease: float = Field(default=3.0, ge=1.0, le=60, allow_inf_nan=False)
    # Data-plane limits every network gets unless the admin overrides them for it (0 or
    # absent: unlimited)
    default_limits: DefaultLimits = Field(default_factory=DefaultLimits)
    # every tenant's quotas and rates unless the admin sets its own (quotas.py; YAML a
    # `tenant_limits:` mapping, flag `--tenant-limits NAME=N,...`)
    tenant_limits: TenantLimits = Field(default_factory=TenantLimits)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str | None) -> str | None:
        if value is None or value == "none":
            return value
        for remote in value.split(","):
            kind, _, rest = remote.strip().partition(":")
            if kind == "unix" and rest:
                continue
            if kind in ("tcp", "ssl"):
                _checked(rest, "db")
                continue
            raise ValueError(
                f"db {value!r}: expected none, or unix:PATH / tcp:IP:PORT remotes, comma-separated"
            )
        return value

    @model_validator(mode="after")
    def _instance_needs_store(self) -> Settings:
        if self.instance is not None and self.db == "none":
            raise ValueError(
                "instance: several instances share their intent through the store; "
                "'db: none' keeps none"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("of_listen")
    @classmethod
    def _of_listen(cls, value: str) -> str:
        if value.startswith("unix:"):
            if not value[5:]:
                raise ValueError(f"of_listen {value!r}: expected unix:PATH with a path")
        else:
            _checked(value, "of_listen")
        return value

    @field_validator("api_listen")
    @classmethod
    def _api_listen(cls, value: str) -> str:
        _checked(value, "api_listen")
        return value

    @staticmethod
    def split(addr: str, what: str) -> tuple[str, int]:
        """HOST:PORT -> (host, port), or ConfigError naming `what`."""
        return _split(addr, what)

    @property
    def of_listen_address(self) -> str:
        """of_listen for `Hypervisor.start`: unix:PATH as given, else HOST:PORT with an IPv6
        host unbracketed (it splits at the last colon)."""
        if self.of_listen.startswith("unix:"):
            return self.of_listen
        host, port = _split(self.of_listen, "of_listen")
        return f"{host}:{port}"


def _checked(value: str, what: str) -> None:
    try:
        _split(value, what)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _got(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: Any, spelled: dict[str, str], yaml_hint: bool) -> str:
    """One pydantic error as `<setting> must be <what it expects>, got <value>`."""
    key = str(err["loc"][0]) if err["loc"] else "config"
    kind = err["type"]
    if key == "default_limits" and len(err["loc"]) > 1:  # one of its fields
        name = f"default_limits.{err['loc'][1]}"
        if kind == "extra_forbidden":
            return f"unknown setting {name!r}"
        return f"{name} must be {_LIMIT}, got {_got(err['input'])}"
    if key == "tenant_limits" and len(err["loc"]) > 1:  # named as tenant_limits.KEY
        sub = str(err["loc"][1])
        if kind == "extra_forbidden":
            return f"unknown setting 'tenant_limits.{sub}'"
        low = 0 if sub in QUOTAS else 1
        if kind in ("greater_than_equal", "less_than_equal"):
            return f"tenant_limits.{sub} must be within {low}-{1 << 31}, got {_got(err['input'])}"
        return f"tenant_limits.{sub} must be a whole number, got {_got(err['input'])}"
    if kind == "extra_forbidden":
        return f"unknown setting {spelled.get(key, key)!r}"
    if kind == "value_error":  # an address validator: its message names the setting already
        return str(err["ctx"]["error"])
    if kind in ("greater_than_equal", "less_than_equal", "finite_number") and key in _RANGE:
        return f"{key} must be {_RANGE[key]}, got {_got(err['input'])}"
    scalar = isinstance(err["input"], int | float)  # YAML read `8080` or `yes` unquoted
    hint = " (quote it in YAML)" if yaml_hint and kind == "string_type" and scalar else ""
    return f"{key} must be {_TYPE.get(key, 'valid')}{hint}, got {_got(err['input'])}"


def _read(path: str) -> tuple[dict[str, object], dict[str, str]]:
    """The YAML file as a mapping with keys spelled with '_' (a file may write '-'), and
    each key as written (for messages)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path}: not a UTF-8 text file") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"config {path}: not valid YAML{where}: {why}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping of settings, got {_got(data)}")
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        if k in values:
            raise ConfigError(f"config {path}: setting {k!r} given twice")
        values[k] = value
        spelled[k] = str(key)
    return values, spelled


def load(path: str | None, overrides: dict[str, object]) -> Settings:
    """Defaults, then the file at `path`, then `overrides` (flags; None: not given), then
    TENANTVISOR_ADMIN_TOKEN if no token was given; a ConfigError if anything is wrong."""
    from_file, spelled = _read(path) if path else ({}, {})
    flags = {k: v for k, v in overrides.items() if v is not None}
    file_limits, flag_limits = from_file.get("tenant_limits"), flags.get("tenant_limits")
    if isinstance(file_limits, dict) and isinstance(flag_limits, dict):
        flags["tenant_limits"] = {**file_limits, **flag_limits}  # limit by limit
    values = {**from_file, **flags}
    if not values.get("admin_token"):
        values["admin_token"] = os.environ.get("TENANTVISOR_ADMIN_TOKEN", "")
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        in_file, in_flags = [], []
        for err in exc.errors(include_url=False):
            key = str(err["loc"][0]) if err["loc"] else ""
            if key in from_file and key not in flags:
                in_file.append(_describe(err, spelled, yaml_hint=True))
            else:
                in_flags.append(_describe(err, spelled, yaml_hint=False))
        if in_file:
            in_file[0] = f"config {path}: {in_file[0]}"
        raise ConfigError("; ".join(in_flags + in_file)) from None  # the file's last
    if not settings.admin_token:
        raise ConfigError("an admin token is required: --admin-token or TENANTVISOR_ADMIN_TOKEN")
    return settings
