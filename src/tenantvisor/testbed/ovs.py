"""A private Open vSwitch: own database, own daemons, every file inside one run directory.

Why private: tests must never touch the machine's system OVS (another engineer, a demo or the
distribution's service may be using it), and several test beds may run one after another on one
machine.  So this class creates its own ``conf.db`` with ``ovsdb-tool``, starts its own
``ovsdb-server`` and ``ovs-vswitchd`` with pid files, logs and control sockets in ``rundir``, and
every client call carries ``OVS_RUNDIR``/``OVS_LOGDIR``/``OVS_DBDIR`` plus an explicit
``--db=``/``-t`` so no tool can fall back to ``/var/run/openvswitch``.

One constraint found on this machine (no OVS kernel module, so every bridge is
``datapath_type=netdev``): the userspace datapath opens a tap device named ``ovs-netdev`` in the
namespace where ``ovs-vswitchd`` runs, so **only one userspace vswitchd per network namespace can
have bridges**; a second one fails every ``add-br`` with "Device or resource busy".  Hence
``netns``: the daemon can run inside a namespace of its own (clients still work from here, they
only use Unix sockets in ``rundir``), and :meth:`OvsInstance.start` refuses clearly when a live
process holds the namespace's ``ovs-netdev`` device (a stale one, left by a vswitchd killed
without ``exit --cleanup``, is simply re-attached by the next vswitchd and is no obstacle).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from tenantvisor.procs import cmdline, pid_alive, stop_process
from tenantvisor.testbed.netns import CommandError, delete_link, link_exists, run

SCHEMA_CANDIDATES = (
    os.environ.get("OVS_PKGDATADIR", "/usr/share/openvswitch") + "/vswitch.ovsschema",
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
)
NETDEV_DP_DEVICE = "ovs-netdev"
"""Tap device the userspace datapath creates in its namespace; its presence means "taken"."""


class OvsError(RuntimeError):
    """The private OVS could not be started, or is used in a way that cannot work."""


def _schema_path() -> str:
    for cand in SCHEMA_CANDIDATES:
        if os.path.exists(cand):
            return cand
    raise OvsError(f"vswitch.ovsschema not found (looked in {', '.join(SCHEMA_CANDIDATES)})")


def netdev_datapath_owner(netns: str | None = None) -> int | None:
    """Pid of a process holding the ``ovs-netdev`` tap of ``netns`` open, or ``None``.

    The device alone proves nothing: a vswitchd killed without ``exit --cleanup`` leaves it
    behind as a persistent tap, which the next vswitchd simply re-attaches.  Only an open
    ``/dev/net/tun`` descriptor bound to it (``iff:`` in ``/proc/PID/fdinfo``) held by a process
    of the same network namespace makes a second datapath impossible.
    """
    if not link_exists(NETDEV_DP_DEVICE, netns):
        return None
    ns_path = f"/run/netns/{netns}" if netns is not None else "/proc/self/ns/net"
    try:
        ns_ino = os.stat(ns_path).st_ino
    except OSError:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino != ns_ino:
                continue
            with os.scandir(f"/proc/{entry.name}/fd") as fds:
                for fd in fds:
                    if os.readlink(fd.path) != "/dev/net/tun":
                        continue
                    with open(f"/proc/{entry.name}/fdinfo/{fd.name}") as fh:
                        if f"iff:\t{NETDEV_DP_DEVICE}\n" in fh.read():
                            return int(entry.name)
        except OSError:
            continue  # process gone or not ours to inspect
    return None


class OvsInstance:
    """One private ``ovsdb-server`` + ``ovs-vswitchd`` pair living in ``rundir``.

    ``netns``: run ``ovs-vswitchd`` inside that (existing) namespace instead of this process's
    one; its bridges then see only that namespace's interfaces.  ``dummy``: start vswitchd with
    ``--enable-dummy=override`` so bridges need no datapath and no root (flow-table-only tests
    with ``ofproto/trace``).  ``check_datapath``: refuse to start when another process holds the
    target namespace's userspace datapath (see the module docstring); turn off only for
    instances that will never create a bridge.  ``vlan_limit``: Open vSwitch's
    ``other_config:vlan-limit`` (0: parse every VLAN header, as the fabric's QinQ needs;
    ``None`` leaves OVS's default, 1, to test what the hypervisor does with such a pswitch).
    """

    DAEMONS = ("ovs-vswitchd", "ovsdb-server")

    def __init__(
        self,
        rundir: str | Path,
        *,
        netns: str | None = None,
        dummy: bool = False,
        check_datapath: bool = True,
        vlan_limit: int | None = 0,
        timeout: float = 10.0,
    ) -> None:
        self.rundir = Path(rundir).resolve()
        self.vlan_limit = vlan_limit
        self.netns = netns
        self.dummy = dummy
        self.check_datapath = check_datapath
        self.timeout = timeout
        self._started = False
        self._adopted_dp = False

    # --- paths and environment --------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.rundir / "conf.db"

    @property
    def db_sock(self) -> Path:
        return self.rundir / "db.sock"

    @property
    def db_target(self) -> str:
        """The ``--db=`` argument every ``ovs-vsctl`` call gets."""
        return f"unix:{self.db_sock}"

    @property
    def vswitchd_ctl(self) -> Path:
        return self.rundir / "ovs-vswitchd.ctl"

    @property
    def ovsdb_ctl(self) -> Path:
        return self.rundir / "ovsdb-server.ctl"

    def pidfile(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.pid"

    def logfile(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.log"

    @property
    def env(self) -> dict[str, str]:
        """Variables that point every OVS tool at this instance instead of the system one."""
        d = str(self.rundir)
        return {"OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}

    @property
    def running(self) -> bool:
        return all(self._pid(d) is not None for d in self.DAEMONS)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> OvsInstance:
        """Create the database and start both daemons; returns ``self``.

        Fails (and leaves nothing running) if this rundir already holds a running instance or if
        the namespace's userspace datapath is taken by another vswitchd.
        """
        if self._started:
            return self
        self.rundir.mkdir(parents=True, exist_ok=True)
        for daemon in self.DAEMONS:
            if self._pid(daemon) is not None:
                raise OvsError(f"{daemon} already running from {self.rundir}")
        if self.check_datapath and not self.dummy:
            owner = netdev_datapath_owner(self.netns)
            if owner is not None:
                where = f"namespace {self.netns}" if self.netns else "this (root) network namespace"
                raise OvsError(
                    f"pid {owner} ({cmdline(owner).strip()!r}) already owns the userspace "
                    f"datapath device '{NETDEV_DP_DEVICE}' in {where}: a second ovs-vswitchd "
                    "cannot create netdev bridges there (tap 'Device or resource busy'). Run "
                    "this instance in a namespace of its own (OvsInstance(netns=...), or Fabric's "
                    "default switch namespace)."
                )
        # A stale datapath tap left by someone else's vswitchd gets re-attached by ours; then
        # stop() must not delete it with `exit --cleanup` (it is not ours), see stop().
        self._adopted_dp = not self.dummy and link_exists(NETDEV_DP_DEVICE, self.netns)
        self._started = True
        try:
            self._start_daemons()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daemons(self) -> None:
        if self.db_path.exists():
            self.db_path.unlink()
        run(["ovsdb-tool", "create", str(self.db_path), _schema_path()], env=self.env)
        run(
            [
                "ovsdb-server",
                str(self.db_path),
                f"--remote=punix:{self.db_sock}",
                f"--pidfile={self.pidfile('ovsdb-server')}",
                f"--log-file={self.logfile('ovsdb-server')}",
                f"--unixctl={self.ovsdb_ctl}",
                "--detach",
            ],
            env=self.env,
            timeout=self.timeout,
        )
        # Before vswitchd starts, so it reads them at its first configuration pass.
        # vlan-limit=0: parse every VLAN header (QinQ matches need both tags; default is 1).
        self.vsctl("--no-wait", "init")
        if self.vlan_limit is not None:
            limit = f"other_config:vlan-limit={self.vlan_limit}"
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".", limit)
        cmd = [
            "ovs-vswitchd",
            self.db_target,
            f"--pidfile={self.pidfile('ovs-vswitchd')}",
            f"--log-file={self.logfile('ovs-vswitchd')}",
            f"--unixctl={self.vswitchd_ctl}",
            "--detach",
        ]
        if self.dummy:
            cmd.append("--enable-dummy=override")
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        run(cmd, env=self.env, timeout=self.timeout)
        # --detach returns once the daemon is ready; one round trip proves the socket works.
        self.appctl("version")

    def stop(self, *, cleanup: bool = True) -> None:
        """Stop both daemons; idempotent, safe after a failed start.

        ``cleanup=True`` asks vswitchd to ``exit --cleanup`` first, which deletes the tap devices
        its datapath created (slow: ~1.4 s for 20 bridges, one RCU wait per device).
        ``cleanup=False`` just signals it, leaving the taps to whoever deletes the namespace
        they live in (what :class:`~tenantvisor.testbed.fabric.Fabric` does with its own).
        Only a process whose command line names this rundir is signalled, so a stale pid file
        whose pid was reused by an unrelated process is ignored.
        """
        pid = self._pid("ovs-vswitchd")
        if pid is not None and not cleanup:
            self._kill(pid)
        elif pid is not None and self._adopted_dp:
            # Keep the adopted ovs-netdev; delete only our bridges' taps, which a plain SIGTERM
            # leaves behind (the userspace datapath creates its taps persistent).
            ours = self._internal_ifaces()
            self._kill(pid)
            for name in ours:
                if name != NETDEV_DP_DEVICE:
                    delete_link(name, self.netns)
        elif pid is not None:
            # `exit --cleanup` deletes the datapath and with it every tap device it created
            # (``ovs-netdev`` and one per bridge), which SIGTERM would leave behind.
            try:
                self.appctl("exit", "--cleanup", timeout=5)
                asked = 3.0
            except CommandError:
                asked = 0.0  # not answering: go straight to signals
            self._kill(pid, first_wait=asked)
        pid = self._pid("ovsdb-server")
        if pid is not None:
            self._kill(pid)
        for daemon in self.DAEMONS:
            self.pidfile(daemon).unlink(missing_ok=True)
        self._started = False

    def _internal_ifaces(self) -> list[str]:
        """Names of this instance's internal (tap) interfaces: the bridges' local ports."""
        try:
            out = self.vsctl("--bare", "--columns=name", "find", "Interface", "type=internal")
        except CommandError:
            return []
        return out.split()

    def _pid(self, daemon: str) -> int | None:
        """Pid of ``daemon`` if its pid file names a live process started from this rundir."""
        try:
            pid = int(self.pidfile(daemon).read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid) or str(self.rundir) not in cmdline(pid):
            return None
        return pid

    def _kill(self, pid: int, *, first_wait: float = 0.0, grace: float = 5.0) -> None:
        """Wait ``first_wait`` s for ``pid`` to go by itself, then SIGTERM, then SIGKILL."""
        if not stop_process(pid, first_wait, grace):
            raise OvsError(f"pid {pid} ({cmdline(pid)!r}) survived SIGKILL")

    def __enter__(self) -> OvsInstance:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------------------
    def vsctl(self, *args: str, timeout: float | None = None) -> str:
        """``ovs-vsctl --db=unix:<rundir>/db.sock ARGS``; returns stdout, raises on failure.

        ``--timeout`` is passed too, so a vsctl waiting for a dead vswitchd fails on its own.
        """
        t = timeout or self.timeout
        cmd = ["ovs-vsctl", f"--db={self.db_target}", f"--timeout={max(1, int(t))}", *args]
        return run(cmd, env=self.env, timeout=t + 2).stdout

    def ofctl(self, *args: str, timeout: float | None = None) -> str:
        """``ovs-ofctl ARGS`` (bridges are reached through ``<rundir>/<bridge>.mgmt``)."""
        return run(["ovs-ofctl", *args], env=self.env, timeout=timeout or self.timeout).stdout

    def appctl(self, *args: str, timeout: float | None = None) -> str:
        """``ovs-appctl -t <rundir>/ovs-vswitchd.ctl ARGS``; returns stdout."""
        t = timeout or self.timeout
        cmd = ["ovs-appctl", "-t", str(self.vswitchd_ctl), f"--timeout={max(1, int(t))}", *args]
        return run(cmd, env=self.env, timeout=t + 2).stdout

    def trace(self, bridge: str, flow: str, *, timeout: float | None = None) -> str:
        """``ofproto/trace BRIDGE FLOW``: where a packet would go through the installed tables.

        No hosts needed; ``flow`` is in ``ovs-ofctl`` syntax, e.g. ``in_port=1,dl_dst=...``.
        """
        return self.appctl("ofproto/trace", bridge, flow, timeout=timeout)

    def log_tail(self, daemon: str = "ovs-vswitchd", lines: int = 30) -> str:
        """Last lines of a daemon's log, for error messages."""
        try:
            return "\n".join(self.logfile(daemon).read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def __repr__(self) -> str:
        where = f" netns={self.netns}" if self.netns else ""
        return f"OvsInstance({str(self.rundir)!r}{where}, running={self.running})"


__all__ = ["CommandError", "OvsError", "OvsInstance"]
