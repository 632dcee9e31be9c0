"""Faucet as a tenant controller for tests: its own virtualenv, its config, its process.

Why each part looks as it does:

* **Own virtualenv.**  Faucet 1.10.x pins ``os_ken==3.1.0`` while tenantvisor needs os-ken 4.x,
  so the two cannot share ``.venv``.  :func:`ensure_faucet_venv` builds ``.venv-faucet`` next to
  it with Debian's ``/usr/bin/python3`` (once; a lock file serialises concurrent callers, e.g.
  ``make -j`` or two test sessions) and marks it complete only after ``faucet --version`` works,
  so an interrupted install is rebuilt rather than trusted.
* **No system files.**  Run as root, Faucet's ``setup.py`` copies sample configs to
  ``/etc/faucet`` and creates ``/var/log/faucet`` unless ``DEBINSTALL=1``; we set it.  At run time
  every path Faucet would default to under ``/etc`` or ``/var/log`` is given explicitly and lives
  in the run directory, including the os-ken ``ryu.conf`` (echo interval, dead-peer detection).
* **Config from data.**  :class:`FaucetConfig` turns datapaths, ports and VLANs into a
  ``faucet.yaml`` and checks the references Faucet would otherwise reject at load time, where the
  only symptom is a log line and a Prometheus gauge, not an exit status.
* **Readiness from Prometheus.**  Faucet keeps running on a bad config, so
  :meth:`FaucetController.start` waits for the OpenFlow listener *and* for the config to be
  loaded (``faucet_config_hash_info``) and raises on ``faucet_config_load_error 1``.
  :meth:`FaucetController.connected_dps` reads ``dp_status`` from the same endpoint: Faucet's own
  view of which switches are up, independent of the switches' view.

What Faucet 1.10.12 sends a switch (seen with ``ovs-ofctl snoop``), which a hypervisor in between
must relay: HELLO (OF1.3 only), FEATURES_REQUEST, an ECHO_REQUEST at once and every 3 s,
PORT_DESC and DESC multipart requests, SET_CONFIG (``miss_send_len=0``), SET_ASYNC twice (all
off, then PACKET_IN action/invalid_ttl + PORT_STATUS), a delete-all FLOW_MOD (table ALL) twice,
then its pipeline as FLOW_MOD ADDs in tables 0-3 (``CONTROLLER:96`` for learning).  No BARRIER,
ROLE_REQUEST, TABLE_FEATURES, GROUP_MOD or METER_MOD with this kind of config.  Its xids are not
unique: it caches serialised messages, so the same FLOW_MOD bytes (and xid) go to every switch,
and the delete-all twice to the same one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tenantvisor.testbed.controllers import free_tcp_port, tcp_listening
from tenantvisor.testbed.topo import Topology

#: Faucet's default router MAC: Faucet drops frames *from* it, so no host may use it.
FAUCET_ROUTER_MAC = "0e:00:00:00:00:01"
#: Environment variable that overrides the default virtualenv location.
FAUCET_VENV_ENV = "TENANTVISOR_FAUCET_VENV"
_MARKER = ".tenantvisor-faucet.json"  # written last: its presence means "install complete"
_PIP_NOISE = re.compile(r"^WARNING: Location '.*' is ignored")


class FaucetError(RuntimeError):
    """Faucet could not be installed, configured or started as asked."""


# --- the virtualenv ------------------------------------------------------------------------------
def default_faucet_venv() -> Path:
    """``<repo>/.venv-faucet`` (next to ``.venv``), or ``$TENANTVISOR_FAUCET_VENV`` if set.

    The repository is found from this file (an editable install, as ``make`` does it); for a
    non-editable install it falls back to the directory holding the running interpreter's venv.
    """
    env = os.environ.get(FAUCET_VENV_ENV)
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and (repo / "src" / "tenantvisor").is_dir():
        return repo / ".venv-faucet"
    return Path(sys.prefix).resolve().parent / ".venv-faucet"


def faucet_venv_info(path: Path | None = None) -> dict[str, Any] | None:
    """What :func:`ensure_faucet_venv` recorded (``version``, ``seconds``, ...), or ``None`` when
    the venv at ``path`` is missing or incomplete."""
    venv = Path(path) if path is not None else default_faucet_venv()
    try:
        info = json.loads((venv / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not (venv / "bin" / "faucet").exists():
        return None
    return info


_LOCK = ".tenantvisor-install.lock"
_LOG = "tenantvisor-pip-install.log"


def ensure_faucet_venv(
    path: Path | None = None,
    *,
    python: str = "/usr/bin/python3",
    spec: str = "faucet",
    lock_timeout: float = 900.0,
    install_timeout: float = 900.0,
) -> Path:
    """Return a virtualenv with Faucet installed, creating it first if needed.

    ``path`` defaults to :func:`default_faucet_venv`.  ``spec`` is what ``pip install`` gets
    (latest Faucet from PyPI unless pinned, e.g. ``"faucet==1.10.12"``).  Idempotent and cheap
    once done (one file read).  Concurrent callers wait on a lock file inside the venv directory
    (so the one ``.gitignore`` entry covers it); the first installs, the others then find the
    finished venv.  A venv directory without the completion marker is a crashed install: its
    contents are removed first, but only if it looks like a venv (``pyvenv.cfg``) or holds only
    our own files; anything else there is not ours to delete.  pip's output goes to
    ``tenantvisor-pip-install.log`` in the venv; raises :class:`FaucetError` with its last lines
    if installation fails.
    """
    venv = Path(path).resolve() if path is not None else default_faucet_venv()
    if faucet_venv_info(venv) is not None:
        return venv
    if venv.is_dir() and not _ours(venv):
        raise FaucetError(f"{venv} holds files and is not a virtualenv; move it away")
    venv.mkdir(parents=True, exist_ok=True)
    with open(venv / _LOCK, "a+") as lock:
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FaucetError(
                        f"another process has held {venv / _LOCK} for {lock_timeout:g} s "
                        "(installing Faucet?); giving up"
                    ) from None
                time.sleep(0.2)
        try:
            if faucet_venv_info(venv) is None:  # nobody finished it while we waited
                _install_faucet_venv(venv, python, spec, install_timeout)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return venv


def _ours(venv: Path) -> bool:
    """Whether ``venv`` may be emptied: a venv, or nothing but our own lock and log files."""
    return (venv / "pyvenv.cfg").is_file() or not {p.name for p in venv.iterdir()} - {_LOCK, _LOG}


def _install_faucet_venv(venv: Path, python: str, spec: str, timeout: float) -> None:
    """Empty ``venv`` (keeping the lock file), create the venv, pip install, verify, mark."""
    if not _ours(venv):
        raise FaucetError(f"{venv} holds files and is not a virtualenv; move it away")
    leftovers = [p for p in venv.iterdir() if p.name != _LOCK]
    for p in leftovers:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    if not Path(python).exists():
        raise FaucetError(f"{python} not found (Debian package python3-venv): needed for {venv}")
    sys.stderr.write(f"tenantvisor: installing {spec} into {venv} ...\n")
    t0 = time.monotonic()
    log = venv / _LOG
    # DEBINSTALL=1: Faucet's setup.py would otherwise write /etc/faucet and /var/log/faucet.
    env = {**os.environ, "DEBINSTALL": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    steps: list[list[str]] = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", spec],
    ]
    with open(log, "w") as out:
        for cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            try:
                rc = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, timeout=timeout
                ).returncode
            except subprocess.TimeoutExpired:
                rc = None
            if rc != 0:
                raise FaucetError(
                    f"`{' '.join(cmd)}` failed (exit status {rc}; full log {log}):\n"
                    f"{_tail(log, 25, skip=_PIP_NOISE)}"
                )
    res = subprocess.run(
        [str(venv / "bin" / "faucet"), "--version"],
        capture_output=True,
        text=True,
        env={**env, "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"},
        timeout=60,
        check=False,
    )
    if res.returncode != 0 or not res.stdout.startswith("Faucet "):
        raise FaucetError(
            f"Faucet installed into {venv} but `faucet --version` failed "
            f"(exit status {res.returncode}):\n{res.stdout}{res.stderr}"
        )
    seconds = round(time.monotonic() - t0, 1)
    info = {"version": res.stdout.split()[1], "spec": spec, "python": python, "seconds": seconds}
    tmp = venv / (_MARKER + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    tmp.rename(venv / _MARKER)
    sys.stderr.write(f"tenantvisor: Faucet {info['version']} ready in {venv} ({seconds} s)\n")


def _tail(path: Path, lines: int, skip: re.Pattern[str] | None = None) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    if skip is not None:
        text = [ln for ln in text if not skip.match(ln.strip())]
    return "\n".join(text[-lines:])


# --- the configuration ---------------------------------------------------------------------------
@dataclass
class FaucetPort:
    """One interface of a datapath: untagged in ``native_vlan`` and/or tagged in
    ``tagged_vlans`` (VLAN *names*).  ``extra`` is copied into the YAML as is (``acls_in``,
    ``loop_protect``...), so options this builder does not model stay reachable."""

    native_vlan: str | None = None
    tagged_vlans: Sequence[str] = ()
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.native_vlan is not None:
            out["native_vlan"] = self.native_vlan
        if self.tagged_vlans:
            out["tagged_vlans"] = list(self.tagged_vlans)
        out.update(self.extra)
        return out


@dataclass
class FaucetDatapath:
    """A switch as Faucet sees it: ``dp_id`` is what the switch announces in FEATURES_REPLY (the
    *virtual* dp_id when Faucet runs through tenantvisor), ``interfaces`` maps OpenFlow port
    numbers to :class:`FaucetPort`.  Ports not listed are ignored by Faucet."""

    name: str
    dp_id: int
    interfaces: dict[int, FaucetPort] = field(default_factory=dict)
    hardware: str = "Open vSwitch"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def add_port(
        self,
        port: int,
        *,
        native_vlan: str | None = None,
        tagged_vlans: Sequence[str] = (),
        description: str | None = None,
        **extra: Any,
    ) -> FaucetPort:
        """Add interface ``port``; raises ``ValueError`` if it is already configured."""
        if port in self.interfaces:
            raise ValueError(f"port {port} of dp {self.name!r} configured twice")
        p = FaucetPort(native_vlan, tuple(tagged_vlans), description, extra)
        self.interfaces[port] = p
        return p

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dp_id": self.dp_id, "hardware": self.hardware}
        out.update(self.extra)
        out["interfaces"] = {p: self.interfaces[p].to_dict() for p in sorted(self.interfaces)}
        return out


@dataclass
class FaucetConfig:
    """A ``faucet.yaml``: VLANs by name and datapaths.  The file it writes has this shape::

        vlans:
          <vlan name>: {vid: <1..4094>, ...extra}
        dps:
          <dp name>:
            dp_id: <int>
            hardware: Open vSwitch
            ...extra
            interfaces:
              <port number>: {native_vlan: <vlan name>, tagged_vlans: [<vlan name>...], ...}

    Build it with :meth:`add_vlan` / :meth:`add_dp` / :meth:`FaucetDatapath.add_port`, pass
    lists to the constructor, or use :meth:`from_topology`.  :meth:`validate` (called by
    :meth:`write`) rejects what Faucet would reject, before Faucet runs.
    """

    dps: list[FaucetDatapath] = field(default_factory=list)
    vlans: dict[str, int] = field(default_factory=dict)
    vlan_extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_vlan(self, name: str, vid: int, **extra: Any) -> None:
        if name in self.vlans:
            raise ValueError(f"VLAN {name!r} defined twice")
        self.vlans[name] = vid
        if extra:
            self.vlan_extra[name] = dict(extra)

    def add_dp(
        self, name: str, dp_id: int, *, hardware: str = "Open vSwitch", **extra: Any
    ) -> FaucetDatapath:
        dp = FaucetDatapath(name, dp_id, hardware=hardware, extra=extra)
        self.dps.append(dp)
        return dp

    def dp(self, name: str) -> FaucetDatapath:
        for dp in self.dps:
            if dp.name == name:
                return dp
        raise KeyError(f"no dp {name!r} in this Faucet config")

    @property
    def dp_ids(self) -> list[int]:
        return [dp.dp_id for dp in self.dps]

    @classmethod
    def from_topology(
        cls,
        topo: Topology,
        *,
        vlan: str = "tenant",
        vid: int = 100,
        dp_ids: Mapping[str, int] | None = None,
    ) -> FaucetConfig:
        """One flat L2 network over ``topo``: host ports untagged in ``vlan``, every inter-switch
        port a trunk tagging it.  ``dp_ids`` overrides switch name -> dp_id (default the
        topology's dpids), for when Faucet sees virtual switches.

        Faucet's learning has no loop protection without stacking, so ``topo`` must be a tree
        (``linear``, a single leaf/spine path...); a cycle would flood forever.
        """
        for h in topo.hosts.values():
            if h.mac.lower() == FAUCET_ROUTER_MAC:
                raise ValueError(f"host {h.name} has Faucet's router MAC {FAUCET_ROUTER_MAC}")
        cfg = cls()
        cfg.add_vlan(vlan, vid)
        ids = dict(dp_ids or {})
        for sw in topo.switches.values():
            dp = cfg.add_dp(sw.name, ids.get(sw.name, sw.dpid))
            for port, what in topo.ports(sw.name).items():
                if what.startswith("host "):
                    dp.add_port(port, native_vlan=vlan, description=what)
                else:
                    dp.add_port(port, tagged_vlans=[vlan], description=what)
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError`` for duplicate names/dp_ids, bad vids, undefined or missing VLANs."""
        for name, vid in self.vlans.items():
            if not 1 <= vid <= 4094:
                raise ValueError(f"VLAN {name!r}: vid {vid} out of range 1..4094")
        if len(set(self.vlans.values())) != len(self.vlans):
            raise ValueError(f"two VLANs share a vid: {self.vlans}")
        names = [dp.name for dp in self.dps]
        if not self.dps or len(set(names)) != len(names):
            raise ValueError(f"need at least one dp, each name once: {names}")
        if len(set(self.dp_ids)) != len(self.dp_ids):
            raise ValueError(f"duplicate dp_id: {self.dp_ids}")
        for dp in self.dps:
            if not 0 < dp.dp_id < 1 << 64:
                raise ValueError(f"dp {dp.name!r}: dp_id {dp.dp_id} out of range")
            if not dp.interfaces:
                raise ValueError(f"dp {dp.name!r} has no interfaces")
            for port, p in dp.interfaces.items():
                where = f"dp {dp.name!r} port {port}"
                if not 0 < port < 0xFFFFFF00:
                    raise ValueError(f"{where}: port number out of range")
                used = [p.native_vlan] if p.native_vlan is not None else []
                used += list(p.tagged_vlans)
                if not used and "output_only" not in p.extra and "stack" not in p.extra:
                    raise ValueError(f"{where}: neither native_vlan nor tagged_vlans")
                if len(set(used)) != len(used):
                    raise ValueError(f"{where}: a VLAN is both native and tagged, or twice")
                unknown = [v for v in used if v not in self.vlans]
                if unknown:
                    raise ValueError(f"{where}: undefined VLANs {unknown}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "vlans": {n: {"vid": v, **self.vlan_extra.get(n, {})} for n, v in self.vlans.items()},
            "dps": {dp.name: dp.to_dict() for dp in self.dps},
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def write(self, path: str | Path) -> Path:
        """Validate, then write the YAML atomically (Faucet may be watching the file)."""
        self.validate()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_yaml())
        tmp.rename(path)
        return path


# --- the controller process ----------------------------------------------------------------------
# os-ken settings Faucet ships in /etc/faucet/ryu.conf: echo every 3 s, a switch that misses 5
# is dropped (the os-ken default would notice a dead channel much later).
_RYU_CONF = "[DEFAULT]\necho_request_interval=3\nmaximum_unreplied_echo_requests=5\n"
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: ``(name, labels, value)``; comments skipped."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or line.startswith("#"):
            continue
        labels = {
            k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m[2] or "")
        }
        try:
            value = float(m[3])
        except ValueError:
            continue
        out.append((m[1], labels, value))
    return out


class FaucetController:
    """Faucet from its own venv, listening for switches on ``host:port`` (OpenFlow 1.3 only).

    ``config`` is a :class:`FaucetConfig` (written to the run directory at :meth:`start`) or
    the path of an existing ``faucet.yaml``.  ``port`` / ``prometheus_port`` default to free
    ports.  ``venv`` defaults to :func:`ensure_faucet_venv` (installing on first use, which
    takes tens of seconds; ``make test`` does it beforehand).  Everything Faucet writes goes to
    ``rundir``: ``faucet-<port>.yaml``, ``.log``, ``-exception.log``, ``.out`` (stdout/stderr
    of osken-manager) and ``-ryu.conf``.
    """

    def __init__(
        self,
        config: FaucetConfig | str | Path,
        rundir: str | Path,
        *,
        venv: Path | None = None,
        port: int | None = None,
        prometheus_port: int | None = None,
        host: str = "127.0.0.1",
        log_level: str = "INFO",
        start_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.rundir = Path(rundir)
        self.venv = venv
        self.host = host
        self.port = port if port is not None else free_tcp_port(host)
        if prometheus_port is None:
            prometheus_port = free_tcp_port(host)
            while prometheus_port == self.port:
                prometheus_port = free_tcp_port(host)
        self.prometheus_port = prometheus_port
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        # urllib would send 127.0.0.1 through $http_proxy if one is set; never do that.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # --- paths --------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        """Where a switch (or the hypervisor) should connect: ``tcp:HOST:PORT``."""
        return f"tcp:{self.host}:{self.port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}/"

    def _file(self, suffix: str) -> Path:
        return self.rundir / f"faucet-{self.port}{suffix}"

    @property
    def config_path(self) -> Path:
        if isinstance(self.config, FaucetConfig):
            return self._file(".yaml")
        return Path(self.config)

    @property
    def log_path(self) -> Path:
        return self._file(".log")

    @property
    def exception_log_path(self) -> Path:
        return self._file("-exception.log")

    @property
    def out_path(self) -> Path:
        return self._file(".out")

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FaucetController:
        """Start Faucet; return once it listens, Prometheus answers and the config is loaded.

        Raises :class:`FaucetError` with the log tail if Faucet exits, does not get there within
        ``start_timeout``, or rejects the config.
        """
        if self.running:
            return self
        self.rundir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.config, FaucetConfig):
            self.config.write(self.config_path)
        elif not self.config_path.is_file():
            raise FaucetError(f"Faucet config {self.config_path} does not exist")
        venv = self.venv if self.venv is not None else ensure_faucet_venv()
        faucet = venv / "bin" / "faucet"
        if not faucet.exists():
            raise FaucetError(f"{faucet} missing: not a Faucet venv (see ensure_faucet_venv)")
        ryu_conf = self._file("-ryu.conf")
        ryu_conf.write_text(_RYU_CONF)
        env = {
            **os.environ,
            "FAUCET_CONFIG": str(self.config_path.resolve()),
            "FAUCET_LOG": str(self.log_path.resolve()),
            "FAUCET_EXCEPTION_LOG": str(self.exception_log_path.resolve()),
            "FAUCET_LOG_LEVEL": self.log_level,
            "FAUCET_PROMETHEUS_ADDR": self.host,
            "FAUCET_PROMETHEUS_PORT": str(self.prometheus_port),
            # faucet exec()s `osken-manager` from PATH: it must be the venv's (os-ken 3.1.0).
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
        }
        env.pop("PYTHONPATH", None)  # never let tenantvisor's os-ken 4.x leak in
        cmd = [
            str(faucet),
            f"--ryu-config-file={ryu_conf.resolve()}",
            f"--ryu-ofp-tcp-listen-port={self.port}",
            f"--ryu-ofp-listen-host={self.host}",
        ]
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=self.rundir
            )
        try:
            self._wait_ready(cmd)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, cmd: Sequence[str]) -> None:
        deadline = time.monotonic() + self.start_timeout
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise FaucetError(
                    f"`{' '.join(cmd)}` exited with status {self.proc.returncode}:\n"
                    f"{self.log_tail()}"
                )
            if tcp_listening(self.port, self.host):
                samples = self._try_metrics()
                if samples is not None:
                    loaded = [lb for n, lb, _ in samples if n == "faucet_config_hash_info"]
                    if any(n == "faucet_config_load_error" and v for n, _, v in samples):
                        error = loaded[0].get("error", "?") if loaded else "?"
                        raise FaucetError(
                            f"Faucet rejected {self.config_path}: {error}\n{self.log_tail()}"
                        )
                    if loaded:
                        return
            if time.monotonic() > deadline:
                raise FaucetError(
                    f"`{' '.join(cmd)}` not ready (OpenFlow {self.target}, Prometheus "
                    f"{self.prometheus_url}, config loaded) within {self.start_timeout:g} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> None:
        """Terminate, wait, kill if needed; idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- observation --------------------------------------------------------------------------
    def _try_metrics(self) -> list[tuple[str, dict[str, str], float]] | None:
        try:
            with self._http.open(self.prometheus_url, timeout=2.0) as resp:
                return parse_prometheus(resp.read().decode(errors="replace"))
        except (OSError, urllib.error.URLError):
            return None

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """All samples Faucet's Prometheus endpoint exports now; raises if it does not answer."""
        samples = self._try_metrics()
        if samples is None:
            raise FaucetError(f"Faucet's Prometheus endpoint {self.prometheus_url} does not answer")
        return samples

    def connected_dps(self) -> dict[int, bool]:
        """dp_id -> whether Faucet considers that datapath up (``dp_status``), for every
        configured dp."""
        out: dict[int, bool] = {}
        for name, labels, value in self.metrics():
            if name == "dp_status" and "dp_id" in labels:
                out[int(labels["dp_id"], 0)] = value == 1.0
        return out

    def wait_connected(self, dp_ids: Iterable[int] | None = None, timeout: float = 30.0) -> None:
        """Block until every dp in ``dp_ids`` (default: all configured) is up in Faucet's view.

        "Up" means Faucet has the switch's FEATURES_REPLY and has pushed its pipeline, which is
        later than the switch's ``is_connected``: wait here before the first packet.
        """
        if dp_ids is None:
            if not isinstance(self.config, FaucetConfig):
                raise ValueError("give dp_ids: the config is a file this object did not build")
            want = set(self.config.dp_ids)
        else:
            want = set(dp_ids)
        deadline = time.monotonic() + timeout
        while True:
            up = {d for d, ok in self.connected_dps().items() if ok}
            if want <= up:
                return
            if not self.running or time.monotonic() > deadline:
                missing = ", ".join(f"{d:#x}" for d in sorted(want - up))
                raise FaucetError(
                    f"Faucet dps not up within {timeout:g} s: {missing}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Faucet's log, exception log and stdout/stderr, each labelled."""
        parts = []
        for p in (self.log_path, self.exception_log_path, self.out_path):
            text = _tail(p, lines)
            if text:
                parts.append(f"--- {p.name}\n{text}")
        return "\n".join(parts)

    def __enter__(self) -> FaucetController:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FaucetController {self.target} prometheus={self.prometheus_port} {state}>"


__all__ = [
    "FAUCET_ROUTER_MAC",
    "FaucetConfig",
    "FaucetController",
    "FaucetDatapath",
    "FaucetError",
    "FaucetPort",
    "default_faucet_venv",
    "ensure_faucet_venv",
    "faucet_venv_info",
    "parse_prometheus",
]
