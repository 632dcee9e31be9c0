"""The node-local steps OVSDB cannot express: endpoint addresses and tunnel neighbours.

The paper used a udev rule to put the endpoint address on ``ex-<id>``; the userspace datapath
additionally resolves tunnel neighbours itself, and a first packet that waits for that
resolution is lost (the VM retries ARP only after 1 s).  tenantvisor knows every endpoint's
fixed MAC, so it seeds them (``tnl/arp/set``) before the first packet: a new VM is reachable
in milliseconds.  Both steps need the node's kernel namespace and ``ovs-vswitchd``'s control
socket, i.e. code on the node; for the emulated nodes that is this module, run from here.
"""

from __future__ import annotations

from pathlib import Path

from tenantvisor.testbed.netns import CommandError, run


class AgentError(RuntimeError):
    """A node-local step failed."""


class LocalAgent:
    """Node-local steps for a node whose run directory (and namespace) this host can reach."""

    def __init__(self, rundir: str, netns: str | None, timeout: float = 10.0) -> None:
        self.rundir = rundir
        self.netns = netns
        self.timeout = timeout

    def _ip(self, *args: str) -> None:
        cmd = ["ip"] + (["-n", self.netns] if self.netns else []) + list(args)
        try:
            run(cmd, timeout=self.timeout)
        except CommandError as exc:
            raise AgentError(f"{' '.join(cmd)}: {exc.stderr.strip() or exc}") from None

    def set_address(self, ifname: str, cidr: str) -> None:
        """Give ``ifname`` the address ``cidr`` (idempotent) and bring it up."""
        self._ip("addr", "replace", cidr, "dev", ifname)
        self._ip("link", "set", "dev", ifname, "up")

    def addresses(self) -> set[tuple[str, str]]:
        """(interface, address/prefix) of every IPv4 address in the node's namespace."""
        cmd = ["ip"] + (["-n", self.netns] if self.netns else []) + ["-4", "-o", "addr", "show"]
        try:
            out = run(cmd, timeout=self.timeout).stdout
        except CommandError as exc:
            raise AgentError(f"{' '.join(cmd)}: {exc.stderr.strip() or exc}") from None
        found = set()
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 4 and words[2] == "inet":  # "4: br-tun inet 10.123.0.1/24 ..."
                found.add((words[1], words[3]))
        return found

    def neighbours(self) -> set[tuple[str, str, str]]:
        """(bridge, IP, MAC) of ``ovs-vswitchd``'s tunnel neighbour cache."""
        ctl = str(Path(self.rundir) / "ovs-vswitchd.ctl")
        cmd = ["ovs-appctl", "-t", ctl, "tnl/arp/show"]
        try:
            out = run(cmd, timeout=self.timeout).stdout
        except CommandError as exc:
            raise AgentError(f"{' '.join(cmd)}: {exc.stderr.strip() or exc}") from None
        found = set()
        for line in out.splitlines():
            words = line.split()
            if len(words) == 3 and words[1].count(":") == 5:  # IP  MAC  Bridge
                found.add((words[2], words[0], words[1].lower()))
        return found

    def seed_neighbours(self, entries: list[tuple[str, str, str]]) -> None:
        """``tnl/arp/set BRIDGE IP MAC`` for each entry."""
        ctl = str(Path(self.rundir) / "ovs-vswitchd.ctl")
        for bridge, ip, mac in entries:
            cmd = ["ovs-appctl", "-t", ctl, "tnl/arp/set", bridge, ip, mac]
            try:
                run(cmd, timeout=self.timeout)
            except CommandError as exc:
                raise AgentError(f"{' '.join(cmd)}: {exc.stderr.strip() or exc}") from None


__all__ = ["AgentError", "LocalAgent"]
