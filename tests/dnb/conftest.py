"""Five emulated compute nodes and one in-process DnbManager, shared by a test module.

Each test creates networks with ids of its own and detaches its VMs at the end, so the nodes
return to two bridges each between tests (checked by ``clean_nodes``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tenantvisor.dedicated.manager import DnbManager
from tenantvisor.testbed.nodes import VM, NodeTestbed

N_NODES = 5


@dataclass
class Env:
    tb: NodeTestbed
    dnb: DnbManager
    macs: int = 0
    vms: list[tuple[str, VM]] = field(default_factory=list)

    def vm(self, net: str, node: str, ip: str, attach: bool = True) -> VM:
        """Boot a VM on ``node`` and (by default) attach it to ``net``."""
        self.macs += 1
        mac = f"02:00:00:00:{self.macs >> 8:02x}:{self.macs & 0xFF:02x}"
        vm = self.tb.add_vm(node, mac, ip)
        if attach:
            self.dnb.attach_vm(net, None, node, mac, ip, vm.tap)
            self.vms.append((net, vm))
        return vm

    def cleanup(self) -> None:
        """Detach and destroy this test's VMs, then delete its networks."""
        for net, vm in self.vms:
            if (net, vm.mac) in self.dnb.intent.vms:
                self.dnb.detach_vm(net, None, vm.mac)
        for _, vm in self.vms:
            self.tb.remove_vm(vm)
        self.vms.clear()
        for net in list(self.dnb.intent.networks):
            self.dnb.delete_network(net, None)

    def snapshot(self) -> dict[str, Any]:
        """Every node's OVSDB ports and provider rule cookies: to prove "unchanged"."""
        out: dict[str, Any] = {}
        for name, db in self.dnb._db.items():
            snap = db.snapshot()
            flows = self.dnb._flows[name]
            out[name] = (snap, {br: sorted(flows.cookies(br)) for br in snap})
        return out


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if os.geteuid() != 0:
        pytest.fail("DNB tests need root (network namespaces, Open vSwitch)")
    tb = NodeTestbed(N_NODES)
    dnb = DnbManager()
    try:
        tb.build()
        for node in tb.nodes.values():
            dnb.add_node(**node.registration())
        yield Env(tb, dnb)
    finally:
        dnb.close()
        tb.close()


@pytest.fixture
def clean(env: Env) -> Iterator[Env]:
    """``env``, cleaned after the test, and checked to be back to the common bridges only."""
    try:
        yield env
    finally:
        env.cleanup()
    for node, (snap, _) in env.snapshot().items():
        assert sorted(snap) == ["br-int", "br-tun"], f"{node} kept {sorted(snap)}"
