"""Hostile OpenVirteX JSON-RPC calls: random parameters (wrong types, huge numbers, long
strings, loops and duplicates in paths) to the methods that build big switches, routes and
paths.  Every call gets a JSON-RPC answer; none is an internal error, and what was refused
changed nothing.  A bounded, seeded sample here; the same loop takes any count by hand."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from .conftest import ADMIN, bearer, snapshot

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tenantvisor.virtual.manager import NetworkManager

INTERNAL_ERROR = -32603
VALUES: list[Any] = [
    None, True, -1, 0, 1, 2, 3, 2**64, 2**63 - 1, "x", "", "1/3-2/3", "1/3-2/3,2/4-3/3",
    "1/3-2/3,1/3-2/3", "1/3-2/3,2/3-1/3", "3/3-2/4,2/3-1/3", [], {}, [1, 2, 3], [1, 1], ["1"],
    1.5, "0x1", "00:00:00:00:00:00:00:01", "a" * 10_000, "spf", "manual", 65_535, 65_536,
]  # fmt: skip
METHODS = {
    "createSwitch": ["tenantId", "dpids", "vdpid"],
    "setInternalRouting": ["tenantId", "vdpid", "algorithm", "backup_num"],
    "connectRoute": ["tenantId", "vdpid", "srcPort", "dstPort", "path", "priority"],
    "disconnectRoute": ["tenantId", "vdpid", "routeId"],
    "connectLink": ["tenantId", "srcDpid", "srcPort", "dstDpid", "dstPort", "algorithm",
                    "backup_num"],
    "setLinkPath": ["tenantId", "linkId", "path", "priority"],
    "createPort": ["tenantId", "dpid", "port"],
}  # fmt: skip


def _call(client: TestClient, endpoint: str, method: str, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    r = client.post(f"/{endpoint}", json=body, headers=bearer(ADMIN))
    assert r.status_code == 200, (method, params, r.text)
    return r.json()


def test_random_parameters_never_make_an_internal_error(
    client: TestClient, manager: NetworkManager
) -> None:
    rng = random.Random(7)
    made = _call(client, "tenant", "createNetwork", {
        "controllerUrls": ["tcp:127.0.0.1:6653"], "networkAddress": "10.0.0.0", "mask": 16,
    })  # fmt: skip
    tid = made["result"]["tenantId"]
    refused = 0
    for _ in range(400):
        method = rng.choice(list(METHODS))
        params = {k: rng.choice([*VALUES, tid]) for k in METHODS[method] if rng.random() < 0.85}
        before = snapshot(manager)
        reply = _call(client, "tenant", method, params)
        assert reply.get("error", {}).get("code") != INTERNAL_ERROR, (method, params, reply)
        if "error" in reply:
            refused += 1
            assert snapshot(manager) == before, (method, params)
    assert refused > 300  # the sample is mostly garbage: it must be refused, not accepted
    for method in ("getVirtualSwitchMapping", "getVirtualLinkMapping", "getSubnet"):
        for params in ({}, {"tenantId": tid}, {"tenantId": "x"}, {"tenantId": 99}):
            reply = _call(client, "status", method, params)
            assert reply.get("error", {}).get("code") != INTERNAL_ERROR, (method, params, reply)
