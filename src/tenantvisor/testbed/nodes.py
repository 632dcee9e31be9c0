"""Emulated compute nodes for dedicated bridges: one private OVS per node, a transport switch,
VMs as network namespaces.

Why this shape (see ``notes/dnb-userspace-tunnels.md``):

* **One OVS instance per node, each in its own namespace** ``<prefix>n<i>``: the userspace
  datapath owns one ``ovs-netdev`` tap per namespace, and tunnels need one IP stack per node
  (one OVS standing in for several nodes refuses a third node's tunnel as a duplicate).
* **Transport switch**: a Linux bridge ``tr0`` in a namespace ``<prefix>fab``; every node's
  ``eth1`` is a veth into it (MTU 1500, TX checksum offload off: TCP through the userspace
  datapath breaks with it on).
* **VMs** are namespaces ``<prefix>v<j>`` with ``eth0`` (MTU 1450 so that GRE with a key,
  42 bytes, fits a 1500-byte transport without fragmentation, as the paper lowered the VM MTU)
  whose peer ``<prefix>v<j>`` sits in the node's namespace, where tenantvisor plugs it into a
  bridge.  The VM is "booted" (namespace and tap exist) before it is attached, as Nova creates
  the tap before Neutron binds the port.
* **A site** namespace ``<prefix>site`` on the transport network stands for the tenant's
  premises: its controller (``ovs-testcontroller``) runs there and node bridges reach it over
  the transport, the way a tenant controller outside the cloud is reached.

Nothing here configures bridges: that is tenantvisor's job (``dedicated/``), given each node's
OVSDB socket.  :meth:`NodeTestbed.close` removes exactly what was created, on every path.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tenantvisor.testbed import netns as nx
from tenantvisor.testbed.fabric import _kill_netns_pids, _stop_process, random_prefix
from tenantvisor.testbed.ovs import OvsInstance

TRANSPORT_SUBNET = ipaddress.IPv4Network("10.123.0.0/24")
SITE_HOST = 250  # the site's address in the transport subnet
VM_MTU = 1450
TRANSPORT_MTU = 1500


@dataclass
class EmulatedNode:
    """One compute node: its namespace, its private OVS and its transport address."""

    name: str
    index: int
    netns: str
    ovs: OvsInstance
    transport_ip: ipaddress.IPv4Interface
    transport_port: str = "eth1"

    @property
    def ovsdb(self) -> str:
        """The OVSDB endpoint tenantvisor registers (``unix:<rundir>/db.sock``)."""
        return self.ovs.db_target

    def registration(self) -> dict[str, Any]:
        """The body of ``POST /v1/nodes`` for this node."""
        return {
            "name": self.name,
            "ovsdb": self.ovsdb,
            "transport_ip": str(self.transport_ip),
            "transport_port": self.transport_port,
            "netns": self.netns,
        }


@dataclass
class VM:
    """A VM: a namespace with ``eth0``; ``tap`` is its peer in the node's namespace."""

    name: str
    netns: str
    node: str
    tap: str
    mac: str
    ip: ipaddress.IPv4Interface
    procs: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)

    def exec(
        self, cmd: Sequence[str] | str, timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return nx.ns_exec(self.netns, argv, timeout=timeout, check=check)

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process in the VM; the testbed stops it at close."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = nx.ns_popen(self.netns, list(cmd), **kwargs)
        self.procs.append(proc)
        return proc

    def ping(self, ip: str, timeout: float = 5.0) -> bool:
        """True when one echo reply from ``ip`` arrives within ``timeout`` (retrying)."""
        end = time.monotonic() + timeout
        while True:
            wait = max(1, math.ceil(end - time.monotonic()))
            cmd = ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", str(wait), ip]
            if self.exec(cmd, timeout=wait + 5, check=False).returncode == 0:
                return True
            if time.monotonic() + 0.2 >= end:
                return False
            time.sleep(0.1)


class NodeTestbed:
    """``n`` emulated compute nodes on one transport switch, plus VMs and a tenant site.

    Use as a context manager.  Names carry ``prefix`` (``tv`` + 4 hex digits by default).
    """

    def __init__(
        self, n: int, *, prefix: str | None = None, rundir: str | Path | None = None
    ) -> None:
        if not 1 <= n <= 200:
            raise ValueError("1..200 nodes")
        self.n = n
        self.prefix = prefix or random_prefix()
        if not (self.prefix.isalnum() and len(self.prefix) <= 6):
            raise ValueError("prefix: 1..6 letters/digits")
        self.fab_ns = self.prefix + "fab"
        self.site_ns = self.prefix + "site"
        self._given_rundir = Path(rundir) if rundir is not None else None
        self.rundir = Path("/nonexistent")
        self._made_rundir = False
        self.nodes: dict[str, EmulatedNode] = {}
        self.vms: dict[str, VM] = {}
        self._netns: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._next_vm = 1
        self._closed = False

    # --- build ----------------------------------------------------------------------------
    def build(self) -> NodeTestbed:
        try:
            self._build()
        except BaseException:
            try:
                self.close()
            except Exception as exc:  # keep the original error
                sys.stderr.write(f"nodes {self.prefix}: cleanup failed: {exc}\n")
            raise
        return self

    def _add_ns(self, name: str) -> None:
        if nx.netns_exists(name):
            raise RuntimeError(f"namespace {name} already exists: not ours to reuse")
        self._netns.append(name)
        nx.add_netns(name)
        nx.disable_ipv6_netns(name)

    def _build(self) -> None:
        if self._given_rundir is not None:
            self._given_rundir.mkdir(parents=True, exist_ok=True)
            self.rundir = self._given_rundir.resolve()
        else:
            self.rundir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-nodes-"))
            self._made_rundir = True
        self._add_ns(self.fab_ns)
        nx.run(["ip", "-n", self.fab_ns, "link", "add", "tr0", "type", "bridge"])
        nx.set_up("tr0", self.fab_ns)
        for i in range(1, self.n + 1):
            name = f"node{i}"
            ns = f"{self.prefix}n{i}"
            self._add_ns(ns)
            self._plug_transport(ns, f"n{i}")
            ovs = OvsInstance(self.rundir / name, netns=ns)
            ovs.start()
            ip = ipaddress.IPv4Interface(f"{TRANSPORT_SUBNET[i]}/{TRANSPORT_SUBNET.prefixlen}")
            self.nodes[name] = EmulatedNode(name, i, ns, ovs, ip)
        self._add_ns(self.site_ns)
        self._plug_transport(self.site_ns, "site")
        site_ip = f"{TRANSPORT_SUBNET[SITE_HOST]}/{TRANSPORT_SUBNET.prefixlen}"
        nx.set_ipv4("eth1", site_ip, self.site_ns)

    def _plug_transport(self, ns: str, key: str) -> None:
        """``eth1`` in ``ns`` <-> ``t-<key>`` on the transport bridge."""
        port = f"t-{key}"
        nx.add_veth(port, "eth1", mtu=TRANSPORT_MTU, netns=self.fab_ns, peer_netns=ns)
        nx.run(["ip", "-n", self.fab_ns, "link", "set", port, "master", "tr0"])
        nx.set_up(port, self.fab_ns)
        nx.set_up("eth1", ns)

    @property
    def site_ip(self) -> str:
        return str(TRANSPORT_SUBNET[SITE_HOST])

    # --- VMs ----------------------------------------------------------------------------------
    def add_vm(self, node: str, mac: str, ip: str, *, mtu: int = VM_MTU) -> VM:
        """Boot a VM on ``node``: namespace + veth, tap left unattached for tenantvisor."""
        n = self.nodes[node]
        j = self._next_vm
        self._next_vm += 1
        name = f"{self.prefix}v{j}"
        self._add_ns(name)
        nx.add_veth(name, "eth0", mtu=mtu, netns=n.netns, peer_netns=name)
        nx.set_mac("eth0", mac, name)
        nx.set_ipv4("eth0", ip, name)
        nx.set_up("eth0", name)
        nx.set_up(name, n.netns)
        vm = VM(name, name, node, name, mac, ipaddress.IPv4Interface(ip))
        self.vms[name] = vm
        return vm

    def remove_vm(self, vm: VM) -> None:
        """Destroy a VM (its tap disappears from the node with the namespace)."""
        for proc in vm.procs:
            _stop_process(proc)
        _kill_netns_pids(vm.netns)
        nx.delete_netns(vm.netns)
        if vm.netns in self._netns:
            self._netns.remove(vm.netns)
        self.vms.pop(vm.name, None)

    # --- the tenant's site ----------------------------------------------------------------
    def site_controller(self, port: int, version: str = "OpenFlow13") -> subprocess.Popen[Any]:
        """Start ``ovs-testcontroller`` in the site namespace, listening on the site's address.

        Waits until it listens (read from the process's own ``/proc/PID/net/tcp``, which shows
        its namespace's sockets, not ours).
        """
        d = self.rundir / "site"
        d.mkdir(exist_ok=True)
        env = {"OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
        cmd = [
            "ovs-testcontroller", "-O", version, f"--unixctl={d}/tc-{port}.ctl",
            "-vconsole:off", f"--log-file={d}/tc-{port}.log", f"ptcp:{port}:{self.site_ip}",
        ]  # fmt: skip
        out = open(d / f"tc-{port}.out", "ab")  # noqa: SIM115 (kept open by the child)
        proc = nx.ns_popen(self.site_ns, ["env", *(f"{k}={v}" for k, v in env.items()), *cmd],
                           stdout=out, stderr=out)  # fmt: skip
        out.close()
        self._procs.append(proc)
        deadline = time.monotonic() + 10
        while not _listening(proc.pid, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ovs-testcontroller did not start: {' '.join(cmd)}")
            time.sleep(0.05)
        return proc

    # --- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop processes, OVS instances, delete namespaces; idempotent, errors reported last."""
        if self._closed:
            return
        errors: list[str] = []
        for vm in list(self.vms.values()):
            for proc in vm.procs:
                with contextlib.suppress(Exception):
                    _stop_process(proc)
        for proc in self._procs:
            with contextlib.suppress(Exception):
                _stop_process(proc)
        for node in self.nodes.values():
            try:
                node.ovs.stop(cleanup=False)
            except Exception as exc:
                errors.append(f"stop OVS of {node.name}: {exc}")
        for ns in reversed(self._netns):
            try:
                _kill_netns_pids(ns)
                nx.delete_netns(ns)
            except Exception as exc:
                errors.append(f"delete {ns}: {exc}")
        if self._made_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        self._closed = True
        if errors:
            raise RuntimeError(f"nodes {self.prefix}: cleanup incomplete: " + "; ".join(errors))

    def __enter__(self) -> NodeTestbed:
        return self.build()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _listening(pid: int, port: int) -> bool:
    try:
        with open(f"/proc/{pid}/net/tcp") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        f = line.split()
        if f[3] == "0A" and int(f[1].rpartition(":")[2], 16) == port:
            return True
    return False


__all__ = ["VM", "EmulatedNode", "NodeTestbed"]
