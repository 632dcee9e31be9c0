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
INVALID_PARAMS = -32602
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


# --- the scalability level: setScalability, Libera's setOVXmode, createNetwork's `scalability` ---
LEVELS = ("exact", "app", "host", "hop", "lite")
MODES = {0: "exact", 1: "lite", 2: "hop"}  # Libera's setOVXmode numbers
LEVEL_VALUES: list[Any] = [
    *VALUES, *LEVELS, False, 4, -2, 2**31, 2**64 + 1, -(2**63), 10**300, 0.0, 1.0, 2.0, 1e308,
    "0", "1", "2", "0x1", " 1", "hop ", "HOP", "Lite", "exact\x00", "\u0127op", ["hop"],
    {"level": "hop"}, [0], {"mode": 1},
]  # fmt: skip


def _accepted_mode(value: Any) -> bool:
    return type(value) is int and value in MODES


def _accepted_level(value: Any) -> bool:
    return type(value) is str and value in LEVELS


def test_every_mode_and_level_is_answered_never_an_internal_error(
    client: TestClient, manager: NetworkManager
) -> None:
    """Each value as `mode` and as `scalability`: Libera's numbers and the five names are
    taken, everything else (bools, floats, strings for numbers, huge numbers, lists) is the
    invalid-params error and changes nothing."""
    tid = _call(client, "tenant", "createNetwork", {"controllerUrls": []})["result"]["tenantId"]
    _call(client, "tenant", "startNetwork", {"tenantId": tid})
    for value in LEVEL_VALUES:
        mode_level = MODES[value] if _accepted_mode(value) else None
        for method, name, accepted, level in (
            ("setOVXmode", "mode", _accepted_mode(value), mode_level),
            ("setScalability", "scalability", _accepted_level(value), value),
        ):
            before = snapshot(manager)
            reply = _call(client, "tenant", method, {"tenantId": tid, name: value})
            if accepted:
                assert reply["result"]["scalability"] == level, (method, value, reply)
                assert manager.networks[tid].scalability == level
                continue
            assert reply["error"]["code"] == INVALID_PARAMS, (method, value, reply)
            assert snapshot(manager) == before, (method, value)


def test_missing_and_mistyped_params_of_the_level_methods(
    client: TestClient, manager: NetworkManager
) -> None:
    tid = _call(client, "tenant", "createNetwork", {"controllerUrls": []})["result"]["tenantId"]
    before = snapshot(manager)
    for method, name, good in (("setOVXmode", "mode", 1), ("setScalability", "scalability", "hop")):
        for params in (
            {},
            {"tenantId": tid},
            {name: good},
            {"tenantId": tid, name: None},
            {"tenantId": None, name: good},
            {"tenantId": str(tid), name: good},
            {"tenantId": True, name: good},
            {"tenantId": float(tid), name: good},
            {"tenantId": 2**64, name: good},
            {"tenantId": -1, name: good},
            {"tenantId": [tid], name: good},
            {"tenantId": tid + 1, name: good},
            {"tenantid": tid, name: good},
        ):
            reply = _call(client, "tenant", method, params)
            assert reply["error"]["code"] == INVALID_PARAMS, (method, params, reply)
        reply = _call(client, "tenant", method, [tid, good])  # positional: OVX's wording
        assert reply["error"] == {
            "code": INVALID_PARAMS,
            "message": f"{method} requires: OBJECT; got: ARRAY",
        }
    assert snapshot(manager) == before


def test_random_level_params_never_make_an_internal_error(
    client: TestClient, manager: NetworkManager
) -> None:
    rng = random.Random(9)
    tid = _call(client, "tenant", "createNetwork", {"controllerUrls": []})["result"]["tenantId"]
    methods = {
        "setOVXmode": ["tenantId", "mode"],
        "setScalability": ["tenantId", "scalability"],
        "createNetwork": ["controllerUrls", "networkAddress", "mask", "scalability"],
    }
    refused = 0
    for _ in range(300):
        method = rng.choice(list(methods))
        params = {
            k: rng.choice([*LEVEL_VALUES, tid, [], ["tcp:127.0.0.1:6653"]])
            for k in methods[method]
            if rng.random() < 0.85
        }
        before = snapshot(manager)
        reply = _call(client, "tenant", method, params)
        assert reply.get("error", {}).get("code") != INTERNAL_ERROR, (method, params, reply)
        if "error" in reply:
            refused += 1
            assert reply["error"]["code"] == INVALID_PARAMS, (method, params, reply)
            assert snapshot(manager) == before, (method, params)
    assert refused > 200
