"""The store's `ovsdb-server`: an embedded standalone one, or a Raft cluster.

`EmbeddedServer(state_dir)` is tenantvisor's default: ``DIR/tenantvisor.db`` created with
``ovsdb-tool create`` on first start, converted (``ovsdb-tool convert``, data kept, the old
file kept as ``tenantvisor.db.backup-<version>``) when it was written by an older schema, and
served by a private ``ovsdb-server`` whose pid file, log, control socket and client socket
(``unix:DIR/tenantvisor.sock``) all live in DIR.  It refuses, saying who, when another live
ovsdb-server serves that file, and refuses a file written by a *newer* schema (a downgrade
would drop columns).

`Cluster` builds a Raft cluster of N members on 127.0.0.1 (``ovsdb-tool create-cluster`` /
``join-cluster``), each with its own directory, file, Raft port and client port; its
`remote` is the comma-separated list a `Store` takes.  A clustered database is upgraded
online with `convert_online` (``ovsdb-client convert``), not with files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tenantvisor.procs import cmdline, pid_alive, stop_process
from tenantvisor.store.codec import DB_NAME, SCHEMA_PATH, schema_version
from tenantvisor.store.errors import ServerError

log = logging.getLogger(__name__)

DB_FILE = "tenantvisor.db"
SOCK_FILE = "tenantvisor.sock"


def _run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 30.0) -> str:
    """Run an OVS tool; its stdout, or ServerError quoting its stderr."""
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except FileNotFoundError:
        raise ServerError(f"{cmd[0]} is not installed (Debian: openvswitch-common)") from None
    except subprocess.TimeoutExpired:
        raise ServerError(f"{' '.join(cmd)}: no answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise ServerError(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _servers_of(db: Path) -> list[int]:
    """Pids of live ovsdb-server processes whose command line names `db`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmd = cmdline(int(entry.name)).split()
        if cmd and Path(cmd[0]).name == "ovsdb-server" and str(db) in cmd:
            out.append(int(entry.name))
    return [p for p in out if pid_alive(p)]


def _locked_by_other(db: Path) -> bool:
    """Whether another process holds the lock ovsdb-server/ovsdb-tool take on `db`."""
    lock = db.parent / f".{db.name}.~lock~"
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)  # closing drops any lock of ours on the file


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _Daemon:
    """One ovsdb-server with every file of its own in `directory`."""

    def __init__(
        self, directory: Path, db: Path, remotes: list[str], timeout: float, name: str
    ) -> None:
        self.directory = directory
        self.db = db
        self.remotes = remotes
        self.timeout = timeout
        self.name = name

    @property
    def sock(self) -> Path:
        return self.directory / SOCK_FILE

    @property
    def pidfile(self) -> Path:
        return self.directory / "ovsdb-server.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / "ovsdb-server.log"

    @property
    def ctl(self) -> Path:
        return self.directory / "ovsdb-server.ctl"

    @property
    def env(self) -> dict[str, str]:
        d = str(self.directory)
        return {"OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}

    def pid(self) -> int | None:
        """The pid of this daemon if its pid file names a live ovsdb-server serving our DB."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid) or str(self.db) not in cmdline(pid):
            return None
        return pid

    def holder(self) -> str | None:
        """Who, other than us, serves or holds our database file (None: nobody)."""
        pids = _servers_of(self.db)
        if pids:
            return f"ovsdb-server pid {pids[0]} ({cmdline(pids[0]).strip()})"
        if _locked_by_other(self.db):
            return "another process (an ovsdb-server or ovsdb-tool) holding its lock file"
        return None

    def start(self) -> None:
        self.sock.unlink(missing_ok=True)
        cmd = [
            "ovsdb-server",
            str(self.db),
            *(f"--remote={r}" for r in [f"punix:{self.sock}", *self.remotes]),
            f"--pidfile={self.pidfile}",
            f"--log-file={self.logfile}",
            f"--unixctl={self.ctl}",
            "--no-chdir",
            "--detach",
        ]
        try:
            _run(cmd, env=self.env, timeout=self.timeout)
        except ServerError as exc:
            raise ServerError(f"{self.name}: {exc}\n{self.log_tail()}") from None
        # --detach returns once the server listens; its socket proves it
        deadline = time.monotonic() + self.timeout
        while not self.sock.exists():
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name}: no socket {self.sock}\n{self.log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                _run(["ovs-appctl", "-t", str(self.ctl), "--timeout=5", "exit"], timeout=7)
                first_wait = 3.0
            except ServerError:
                first_wait = 0.0
            _kill(pid, first_wait)
        self.pidfile.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        except OSError:
            return ""


def _kill(pid: int, first_wait: float = 0.0, grace: float = 5.0) -> None:
    """Wait `first_wait` s for `pid` to end by itself, then SIGTERM, then SIGKILL."""
    if not stop_process(pid, first_wait, grace):
        raise ServerError(f"pid {pid} ({cmdline(pid)!r}) survived SIGKILL")


def _version(text: str) -> tuple[int, int, int]:
    return schema_version(text.strip())


class EmbeddedServer:
    """tenantvisor's own standalone ovsdb-server over ``state_dir/tenantvisor.db``.

    ``remotes``: more listeners (e.g. ``ptcp:6650:127.0.0.1``) besides the unix socket.
    ``adopt``: if an ovsdb-server that this class started earlier still serves the file (a
    tenantvisor that died without stopping it), use it instead of refusing.
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        schema: str | Path = SCHEMA_PATH,
        remotes: list[str] | None = None,
        timeout: float = 10.0,
        adopt: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.schema = Path(schema).resolve()
        self.adopt = adopt
        self._d = _Daemon(
            self.state_dir,
            self.state_dir / DB_FILE,
            list(remotes or []),
            timeout,
            f"ovsdb-server of {self.state_dir}",
        )
        self.converted: tuple[str, str] | None = None  # (from, to) when start converted
        self.created = False  # start created the database file

    @property
    def db_path(self) -> Path:
        return self._d.db

    @property
    def remote(self) -> str:
        """What a `Store` connects to."""
        return f"unix:{self._d.sock}"

    @property
    def log_path(self) -> Path:
        return self._d.logfile

    @property
    def pid(self) -> int | None:
        return self._d.pid()

    @property
    def running(self) -> bool:
        return self._d.pid() is not None

    def log_tail(self, lines: int = 20) -> str:
        return self._d.log_tail(lines)

    def start(self) -> EmbeddedServer:
        """Create or convert the database if needed, then serve it; returns self."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._d.pid() is not None:
            if self.adopt:
                log.info("store: adopting the running %s", self._d.name)
                return self
            raise ServerError(
                f"an ovsdb-server (pid {self._d.pid()}) already serves {self.db_path}: "
                f"stop it first, or connect to {self.remote}"
            )
        who = self._d.holder()
        if who is not None:
            raise ServerError(f"{self.db_path} is held by {who}: stop it first")
        self._prepare()
        self._d.start()
        log.info("store: ovsdb-server serving %s at %s", self.db_path, self.remote)
        return self

    def _prepare(self) -> None:
        db, schema = str(self.db_path), str(self.schema)
        want_name = _run(["ovsdb-tool", "schema-name", schema]).strip()
        want = _run(["ovsdb-tool", "schema-version", schema]).strip()
        if not self.db_path.exists():
            _run(["ovsdb-tool", "create", db, schema])
            self.created = True
            log.info("store: created %s (schema %s %s)", db, want_name, want)
            return
        name = _run(["ovsdb-tool", "db-name", db]).strip()
        if name != want_name:
            raise ServerError(f"{db} holds database {name!r}, not {want_name!r}")
        try:
            _run(["ovsdb-tool", "db-is-clustered", db])
        except ServerError:
            pass  # standalone: the normal case
        else:
            raise ServerError(
                f"{db} is a clustered database file: serve it as a cluster member and "
                "upgrade it online (store.server.convert_online)"
            )
        have = _run(["ovsdb-tool", "db-version", db]).strip()
        if _version(have) == _version(want):
            return
        if _version(have) > _version(want):
            raise ServerError(
                f"{db} was written with schema {have}, newer than this tenantvisor's {want}: "
                "refusing to downgrade it (columns would be lost)"
            )
        backup = self.db_path.with_name(f"{DB_FILE}.backup-{have}")
        shutil.copy2(db, backup)
        _run(["ovsdb-tool", "convert", db, schema])
        self.converted = (have, want)
        log.info("store: converted %s from schema %s to %s (old file: %s)", db, have, want, backup)

    def stop(self) -> None:
        """Stop the server (idempotent; the database file stays)."""
        self._d.stop()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedServer({str(self.state_dir)!r}, running={self.running})"


# --- Raft clusters ------------------------------------------------------------------------
@dataclass
class ClusterMember:
    directory: Path
    raft: str  # tcp:IP:PORT the members talk Raft on
    remote: str  # tcp:IP:PORT clients connect to
    daemon: _Daemon

    @property
    def db_path(self) -> Path:
        return self.daemon.db

    @property
    def unix_remote(self) -> str:
        return f"unix:{self.daemon.sock}"

    @property
    def running(self) -> bool:
        return self.daemon.pid() is not None

    def start(self) -> None:
        self.daemon.start()

    def stop(self) -> None:
        self.daemon.stop()

    def status(self) -> str:
        """``cluster/status`` as the member reports it (role, term, servers)."""
        return _run(
            ["ovs-appctl", "-t", str(self.daemon.ctl), "cluster/status", DB_NAME], timeout=5
        )

    @property
    def is_leader(self) -> bool:
        try:
            return "Role: leader" in self.status()
        except ServerError:
            return False


class Cluster:
    """A Raft cluster of `size` members on `host`, member i in ``base_dir/mI``.

    `start` creates the files on first use (``create-cluster`` for the first member,
    ``join-cluster`` for the others), starts every member and waits until each has joined.
    Ports are chosen once and kept in ``base_dir/cluster.json``: the Raft addresses are
    written in the files, so a restart needs the same ones.
    """

    def __init__(
        self,
        base_dir: str | Path,
        size: int = 3,
        *,
        schema: str | Path = SCHEMA_PATH,
        host: str = "127.0.0.1",
        timeout: float = 20.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one member")
        self.base_dir = Path(base_dir).resolve()
        self.schema = Path(schema).resolve()
        self.host = host
        self.timeout = timeout
        self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ports = self._ports(size)
        self.members = []
        for i, (raft, client) in enumerate(ports, 1):
            d = self.base_dir / f"m{i}"
            remote = f"tcp:{host}:{client}"
            daemon = _Daemon(
                d, d / DB_FILE, [f"ptcp:{client}:{host}"], timeout, f"cluster member {i} ({d})"
            )
            self.members.append(ClusterMember(d, f"tcp:{host}:{raft}", remote, daemon))

    def _ports(self, size: int) -> list[tuple[int, int]]:
        conf = self.base_dir / "cluster.json"
        if conf.exists():
            got = [tuple(p) for p in json.loads(conf.read_text())["ports"]]
            if len(got) != size:
                raise ServerError(f"{conf} describes {len(got)} members, not {size}")
            return [(int(a), int(b)) for a, b in got]
        ports: list[tuple[int, int]] = []
        taken: set[int] = set()
        while len(ports) < size:
            a, b = free_port(self.host), free_port(self.host)
            if a != b and not {a, b} & taken:
                taken |= {a, b}
                ports.append((a, b))
        conf.write_text(json.dumps({"ports": ports}))
        return ports

    @property
    def remote(self) -> str:
        """Every member's client address, comma-separated: what a `Store` takes."""
        return ",".join(m.remote for m in self.members)

    def start(self) -> Cluster:
        schema = str(self.schema)
        first = self.members[0]
        for m in self.members:
            m.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if m.running:
                raise ServerError(f"{m.daemon.name} is already running")
        if not first.db_path.exists():
            _run(["ovsdb-tool", "create-cluster", str(first.db_path), schema, first.raft])
        for m in self.members[1:]:
            if not m.db_path.exists():
                others = [x.raft for x in self.members if x is not m]
                _run(["ovsdb-tool", "join-cluster", str(m.db_path), DB_NAME, m.raft, *others])
        try:
            for m in self.members:
                m.start()
            for m in self.members:
                _run(
                    [
                        "ovsdb-client",
                        f"--timeout={max(1, int(self.timeout))}",
                        "wait",
                        m.unix_remote,
                        DB_NAME,
                        "connected",
                    ],
                    timeout=self.timeout + 2,
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        errors = []
        for m in self.members:
            try:
                m.stop()
            except ServerError as exc:
                errors.append(str(exc))
        if errors:
            raise ServerError("; ".join(errors))

    def leader(self) -> ClusterMember | None:
        return next((m for m in self.members if m.running and m.is_leader), None)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_cluster(base_dir: str | Path, size: int = 3, **kw: object) -> Cluster:
    """A started `Cluster` (see there)."""
    return Cluster(base_dir, size, **kw).start()  # type: ignore[arg-type]


def convert_online(remote: str, schema: str | Path = SCHEMA_PATH, timeout: float = 30.0) -> bool:
    """Upgrade the database a running server (or cluster: any member's address, or the
    comma-separated list) serves to `schema`, data kept; False when it was up to date."""
    target = remote.split(",")[0]
    t = f"--timeout={max(1, int(timeout))}"
    got = _run(["ovsdb-client", t, "get-schema-version", target, DB_NAME], timeout=timeout)
    want = _run(["ovsdb-tool", "schema-version", str(schema)])
    if _version(got) > _version(want):
        raise ServerError(f"{target} serves schema {got.strip()}, newer than {want.strip()}")
    need = _run(["ovsdb-client", t, "needs-conversion", target, str(schema)], timeout=timeout)
    if need.strip() != "yes":
        return False
    _run(["ovsdb-client", t, "convert", target, str(schema)], timeout=timeout + 2)
    return True


__all__ = [
    "DB_FILE",
    "SOCK_FILE",
    "Cluster",
    "ClusterMember",
    "EmbeddedServer",
    "convert_online",
    "create_cluster",
    "free_port",
]
