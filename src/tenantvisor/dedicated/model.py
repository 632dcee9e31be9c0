"""DNB intent: compute nodes, tenant networks and VM bindings, as plain data.

Nothing here talks to a node; the planner derives everything a node must hold from these
records alone, so they are what a store (DESIGN.md: "State and scale-out") has to keep.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    """How a network's VMs are attached."""

    DEDICATED = "dedicated"  # brint-<id>/brtun-<id> per network and node (the paper's DNB)
    COMMON = "common"  # shared br-int/br-tun, a VLAN per network (OpenStack's CNB)


class PortKind(StrEnum):
    """Ports a tenant may add to its own dedicated bridges."""

    GRE = "gre"
    VXLAN = "vxlan"
    GENEVE = "geneve"
    INTERNAL = "internal"


@dataclass(frozen=True)
class Node:
    """A compute node: an Open vSwitch reached over OVSDB.

    ``index`` (1..250) is assigned at registration and names the node in tunnel port names,
    endpoint addresses and MACs.  ``netns`` and ``rundir`` say where node-local steps run
    (see ``agent.py``); ``rundir`` defaults to the directory of a ``unix:`` OVSDB socket.
    """

    name: str
    index: int
    ovsdb: str
    transport_ip: ipaddress.IPv4Interface
    transport_port: str = "eth1"
    netns: str | None = None
    rundir: str | None = None


@dataclass(frozen=True)
class Network:
    """A tenant network.  ``serial`` (1..65535) is internal and names MACs and subnets."""

    id: str
    tenant_id: int
    mode: Mode
    segmentation_id: int
    local_vid: int
    endpoint_subnet: ipaddress.IPv4Network
    serial: int
    controller: str | None = None  # tenant's OpenFlow controller on its dedicated bridges


@dataclass(frozen=True)
class VmBinding:
    """A VM's port: its tap ``interface`` on ``node`` plugged into ``network``."""

    network: str
    node: str
    mac: str
    ip: ipaddress.IPv4Interface
    interface: str


@dataclass(frozen=True)
class TenantPort:
    """A port a tenant added to its own bridge on one node, through the API."""

    network: str
    node: str
    name: str
    kind: PortKind
    remote_ip: ipaddress.IPv4Address | None = None
    key: int | None = None


@dataclass
class Intent:
    """Everything the provider and the tenants asked for; the planner's only input."""

    nodes: dict[str, Node] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    vms: dict[tuple[str, str], VmBinding] = field(default_factory=dict)  # (network, mac)
    tenant_ports: dict[tuple[str, str], TenantPort] = field(default_factory=dict)  # (node, name)

    def copy(self) -> Intent:
        """A shallow copy whose dicts may be changed without touching this one (records are
        frozen, so sharing them is safe)."""
        return Intent(
            dict(self.nodes), dict(self.networks), dict(self.vms), dict(self.tenant_ports)
        )

    def hosts(self, network: str) -> set[str]:
        """Nodes hosting at least one VM of ``network``."""
        return {vm.node for vm in self.vms.values() if vm.network == network}

    def networks_on(self, node: str) -> set[str]:
        """Networks with at least one VM on ``node`` (the paper's tns_c)."""
        return {vm.network for vm in self.vms.values() if vm.node == node}
