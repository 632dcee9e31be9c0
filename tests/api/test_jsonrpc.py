"""The OpenVirteX-compatible JSON-RPC endpoints: an ovxctl-style session and its errors.

Reply shapes are checked key for key against what OVX builds (getDBObject of OVXNetwork,
OVXSwitch, OVXPort/PhysicalPort, OVXLink/Link, Host; the Gson/Jackson serializers for the
topologies), so scripts that read `reply['vdpid']` or `result['switches']` keep working.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from tenantvisor.virtual.manager import NetworkManager
from tests.api.conftest import ADMIN, LiveServer, bearer, snapshot

DPIDS = {n: f"00:00:00:00:00:00:00:{n:02x}" for n in range(1, 6)}

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

OVX = 0xA42305 << 32  # the vdpids OVX chooses: 00:a4:23:05:00:00:00:NN


def ovx_auth(token: str = ADMIN) -> dict[str, str]:
    """What ovxctl sends: HTTP Basic, user 'admin', the password typed at its prompt."""
    raw = base64.b64encode(f"admin:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}", "Content-Type": "application/json-rpc"}


class Rpc:
    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def raw(self, service: str, method: str, params: Any = None, req_id: Any = "ovxctl") -> Any:
        request: dict[str, Any] = {"id": req_id, "method": method, "jsonrpc": "2.0"}
        if params is not None:
            request["params"] = params
        r = self.client.post(f"/{service}", json=request, headers=self.headers)
        assert r.status_code == 200, r.text  # OVX: every JSON-RPC reply is HTTP 200
        reply = r.json()
        assert reply["jsonrpc"] == "2.0" and reply["id"] == req_id
        return reply

    def __call__(self, service: str, method: str, params: Any = None) -> Any:
        reply = self.raw(service, method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def error(self, service: str, method: str, params: Any = None) -> dict[str, Any]:
        reply = self.raw(service, method, params)
        assert "result" not in reply, reply
        err: dict[str, Any] = reply["error"]
        return err


@pytest.fixture
def rpc(client: TestClient) -> Rpc:
    return Rpc(client, ovx_auth())


def test_ovx_session(rpc: Rpc, manager: NetworkManager) -> None:
    """The OVX tutorial, as `ovxctl -u admin` would send it, on the s1-s2-s3 line."""
    net = rpc(
        "tenant",
        "createNetwork",
        {"controllerUrls": ["tcp:127.0.0.1:6633"], "networkAddress": "10.0.0.0", "mask": 16},
    )
    assert net == {
        "tenantId": 1,
        "controllerUrls": ["tcp:127.0.0.1:6633"],
        "networkAddress": 10 << 24,
        "mask": 16,
        "isBooted": False,
    }
    tid = net["tenantId"]
    # the admin's OVX networks belong to tenant 'ovx', created on first use
    assert [t.name for t in manager.tenants.values()] == ["ovx"]
    assert manager.networks[tid].tenant_id == next(iter(manager.tenants))

    sws = [rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [d]}) for d in (1, 2, 3)]
    assert sws[0] == {"vdpid": OVX | 1, "dpids": [1], "tenantId": tid}
    assert [s["vdpid"] for s in sws] == [OVX | 1, OVX | 2, OVX | 3]

    def port(dpid: int, p: int) -> Any:
        return rpc("tenant", "createPort", {"tenantId": tid, "dpid": dpid, "port": p})

    assert port(1, 1) == {
        "dpid": 1, "port": 1, "vport": 1, "vdpid": OVX | 1, "tenantId": tid, "exclusive": False,
    }  # fmt: skip
    assert port(1, 3)["vport"] == 2
    assert port(2, 3)["vport"] == 1
    assert port(2, 4)["vport"] == 2
    assert port(3, 3)["vport"] == 1
    assert port(3, 1)["vport"] == 2

    link = rpc(
        "tenant",
        "connectLink",
        {
            "tenantId": tid,
            "srcDpid": OVX | 1,
            "srcPort": 2,
            "dstDpid": OVX | 2,
            "dstPort": 1,
            "algorithm": "spf",
            "backup_num": 1,
        },
    )
    assert link == {
        "srcDpid": OVX | 1,
        "srcPort": 2,
        "dstDpid": OVX | 2,
        "dstPort": 1,
        "linkId": 1,
        "priority": 0,
        "algorithm": "spf",
        "backup_num": 1,  # the line has no second path: the backup appears once one exists
        "path": [{"srcDpid": 1, "srcPort": 3, "dstDpid": 2, "dstPort": 3}],
        "tenantId": tid,
    }
    link2 = rpc(
        "tenant",
        "connectLink",
        {
            "tenantId": tid,
            "srcDpid": OVX | 2,
            "srcPort": 2,
            "dstDpid": OVX | 3,
            "dstPort": 1,
            "algorithm": "spf",
            "backup_num": 1,
        },
    )
    assert link2["linkId"] == 2

    host = rpc(
        "tenant",
        "connectHost",
        {"tenantId": tid, "vdpid": OVX | 1, "vport": 1, "mac": "00:00:00:00:00:01"},
    )
    assert host == {"vdpid": OVX | 1, "vport": 1, "mac": 1, "hostId": 1, "tenantId": tid}
    host2 = rpc("tenant", "connectHost", {"tenantId": tid, "vdpid": OVX | 3, "vport": 2, "mac": 2})
    assert host2["mac"] == 2 and manager.networks[tid].hosts[host2["hostId"]].mac.endswith(":02")

    booted = rpc("tenant", "startNetwork", {"tenantId": tid})
    assert booted["isBooted"] is True and set(booted) == set(net)

    assert rpc("status", "listVirtualNetworks") == [tid]
    topo = rpc("status", "getVirtualTopology", {"tenantId": tid})
    assert topo["switches"] == [
        "00:a4:23:05:00:00:00:01",
        "00:a4:23:05:00:00:00:02",
        "00:a4:23:05:00:00:00:03",
    ]
    assert topo["links"][:2] == [  # each vlink once per direction, as OVX keeps them
        {
            "linkId": 1,
            "tenantId": tid,
            "src": {"dpid": "00:a4:23:05:00:00:00:01", "port": 2},
            "dst": {"dpid": "00:a4:23:05:00:00:00:02", "port": 1},
        },
        {
            "linkId": 1,
            "tenantId": tid,
            "src": {"dpid": "00:a4:23:05:00:00:00:02", "port": 1},
            "dst": {"dpid": "00:a4:23:05:00:00:00:01", "port": 2},
        },
    ]
    assert len(topo["links"]) == 4

    phys = rpc("status", "getPhysicalTopology", {"ignored": True})
    assert phys["switches"][0] == "00:00:00:00:00:00:00:01" and len(phys["switches"]) == 5
    assert phys["links"][0] == {
        "linkId": 0,
        "src": {"dpid": "00:00:00:00:00:00:00:01", "port": 3},
        "dst": {"dpid": "00:00:00:00:00:00:00:02", "port": 3},
    }

    ctl = rpc("tenant", "setNetworkControllers", {"tenantId": tid, "controllerUrls": ["ptcp:6700"]})
    assert ctl["controllerUrls"] == ["ptcp:6700:0.0.0.0"]
    assert rpc("tenant", "stopNetwork", {"tenantId": tid})["isBooted"] is False

    # removals answer a null result, as OVX's `new JSONRPC2Response(0)`
    assert rpc("tenant", "disconnectHost", {"tenantId": tid, "hostId": host2["hostId"]}) is None
    assert rpc("tenant", "disconnectLink", {"tenantId": tid, "linkId": 2}) is None
    assert rpc("tenant", "removePort", {"tenantId": tid, "vdpid": OVX | 3, "vport": 1}) is None
    assert rpc("tenant", "removeSwitch", {"tenantId": tid, "vdpid": OVX | 3}) is None
    vn = manager.networks[tid]
    assert sorted(vn.switches) == [OVX | 1, OVX | 2] and list(vn.links) == [1]
    assert list(vn.hosts) == [1]
    assert rpc("tenant", "removeNetwork", {"tenantId": tid}) is None
    assert manager.networks == {}
    assert rpc("status", "listVirtualNetworks") == []


def test_ovxctl_switch_dpid_option_and_long_dpids(rpc: Rpc, manager: NetworkManager) -> None:
    """ovxctl sends the vdpid of createSwitch as "dpid"; OVX clients send Java (signed) longs."""
    tid = rpc(
        "tenant", "createNetwork", {"controllerUrls": [], "networkAddress": "10.0.0.0", "mask": 8}
    )["tenantId"]
    sw = rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [1], "dpid": 0xBEEF})
    assert sw["vdpid"] == 0xBEEF
    sw = rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [2], "dpid": 0})
    assert sw["vdpid"] == OVX | 1  # 0 means: choose one
    manager.topo.add_switch(type(manager.topo.switches[1])(dpid=(1 << 64) - 1))
    sw = rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [-1]})
    assert sw["dpids"] == [(1 << 64) - 1]


def test_tenant_token_owns_its_networks(client: TestClient, manager: NetworkManager) -> None:
    alice = manager.create_tenant("alice")
    bob = manager.create_tenant("bob")
    a = Rpc(client, ovx_auth(alice.token))
    b = Rpc(client, bearer(bob.token))
    tid = a("tenant", "createNetwork", {"controllerUrls": ["tcp:127.0.0.1:6633"]})["tenantId"]
    assert manager.networks[tid].tenant_id == alice.id
    assert "ovx" not in [t.name for t in manager.tenants.values()]
    assert b("status", "listVirtualNetworks") == []
    before = snapshot(manager)
    for service, method, params in [
        ("status", "getVirtualTopology", {"tenantId": tid}),
        ("tenant", "createSwitch", {"tenantId": tid, "dpids": [1]}),
        ("tenant", "startNetwork", {"tenantId": tid}),
        ("tenant", "removeNetwork", {"tenantId": tid}),
    ]:
        err = b.error(service, method, params)
        assert err["code"] == -32602
        assert err["message"] == f"no virtual network {tid}"
        assert err["data"] == {"http_status": 404, "kind": "NotFound"}
    assert snapshot(manager) == before
    assert a("status", "listVirtualNetworks") == [tid]


@pytest.fixture
def ovx_net(rpc: Rpc) -> dict[str, Any]:
    """An OVX network: vswitches on s1, s2, s4; vports s1:1(1) s1:3(2) s2:3(1) s4:3(1)."""
    tid = rpc(
        "tenant",
        "createNetwork",
        {"controllerUrls": ["tcp:127.0.0.1:6633"], "networkAddress": "10.0.0.0", "mask": 16},
    )["tenantId"]
    for d in (1, 2, 4):
        rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [d]})
    for d, p in ((1, 1), (1, 3), (2, 3), (4, 3)):
        rpc("tenant", "createPort", {"tenantId": tid, "dpid": d, "port": p})
    rpc(
        "tenant",
        "connectHost",
        {"tenantId": tid, "vdpid": OVX | 1, "vport": 1, "mac": "02:00:00:00:00:01"},
    )
    return {"tid": tid}


BAD_CALLS: list[tuple[str, str, Any, str]] = [
    # (service, method, params, substring of the message); tenantId filled in by the test
    ("tenant", "createSwitch", {"dpids": [99]}, "unknown physical dpid"),
    ("tenant", "createSwitch", {"dpids": [1]}, "already hosts"),
    ("tenant", "createSwitch", {"dpids": "1"}, "must be a list of dpids"),
    ("tenant", "createSwitch", {"dpids": [True]}, "not a datapath id"),
    ("tenant", "createSwitch", {}, "missing required parameter 'dpids'"),
    ("tenant", "createPort", {"dpid": 1, "port": 99}, "has no port 99"),
    ("tenant", "createPort", {"dpid": 99, "port": 1}, "unknown physical dpid"),
    ("tenant", "createPort", {"dpid": 1, "port": "3"}, "'port' must be an integer"),
    ("tenant", "createPort", {"dpid": 1, "port": 1}, "already an edge vport"),
    (
        "tenant",
        "connectLink",
        {
            "srcDpid": OVX | 1,
            "srcPort": 1,
            "dstDpid": OVX | 2,
            "dstPort": 1,
            "algorithm": "spf",
            "backup_num": 1,
        },
        "edge port",
    ),
    (
        "tenant",
        "connectLink",
        {
            "srcDpid": OVX | 1,
            "srcPort": 2,
            "dstDpid": OVX | 3,
            "dstPort": 1,
            "algorithm": "spf",
            "backup_num": 1,
        },
        "no physical path",
    ),
    (
        "tenant",
        "connectLink",
        {
            "srcDpid": OVX | 1,
            "srcPort": 2,
            "dstDpid": OVX | 2,
            "dstPort": 1,
            "algorithm": "ecmp",
            "backup_num": 1,
        },
        "routing algorithm 'ecmp'",
    ),
    (
        "tenant",
        "connectLink",
        {"srcDpid": OVX | 1, "srcPort": 2, "dstDpid": OVX | 2, "dstPort": 1, "backup_num": 900},
        "backup_num 900 is out of range 0-8",
    ),
    (
        "tenant",
        "connectLink",
        {"srcDpid": OVX | 1, "srcPort": 2, "dstDpid": OVX | 9, "dstPort": 1},
        "no vswitch",
    ),
    (
        "tenant",
        "connectHost",
        {"vdpid": OVX | 1, "vport": 1, "mac": "02:00:00:00:00:01"},
        "distinct MACs",
    ),
    ("tenant", "connectHost", {"vdpid": OVX | 1, "vport": 1, "mac": "nope"}, "MAC"),
    (
        "tenant",
        "connectHost",
        {"vdpid": OVX | 1, "vport": 2, "mac": "02:00:00:00:00:07"},
        "link port",
    ),
    ("tenant", "connectHost", {"vdpid": OVX | 1, "vport": 1}, "missing required parameter 'mac'"),
    ("tenant", "disconnectHost", {"hostId": 42}, "no host 42"),
    ("tenant", "disconnectLink", {"linkId": 42}, "no vlink 42"),
    ("tenant", "removePort", {"vdpid": OVX | 1, "vport": 42}, "has no vport 42"),
    ("tenant", "removeSwitch", {"vdpid": "zz"}, "not a datapath id"),
    ("tenant", "setNetworkControllers", {"controllerUrls": ["tcp:1.2.3.4"]}, "controller URL"),
    ("tenant", "startNetwork", {"tenantId": 77}, "no virtual network 77"),
    ("tenant", "startNetwork", {"tenantId": "1"}, "'tenantId' must be an integer"),
    ("status", "getVirtualTopology", {"tenantId": 77}, "no virtual network 77"),
    ("status", "getVirtualTopology", {"tenantId": None}, "missing required parameter 'tenantId'"),
    ("tenant", "setScalability", {"scalability": "fastest"}, "expected one of exact, app, host"),
    ("tenant", "setScalability", {"scalability": "HOP"}, "scalability level 'HOP'"),
    ("tenant", "setScalability", {"scalability": 2}, "'scalability' must be a string"),
    ("tenant", "setScalability", {}, "missing required parameter 'scalability'"),
    ("tenant", "setScalability", {"tenantId": 77, "scalability": "hop"}, "no virtual network 77"),
    ("tenant", "setOVXmode", {"mode": 3}, "mode 3 is not one of 0 exact, 1 lite, 2 hop"),
    ("tenant", "setOVXmode", {"mode": -1}, "mode -1 is not one of"),
    ("tenant", "setOVXmode", {"mode": "1"}, "'mode' must be an integer"),
    ("tenant", "setOVXmode", {"mode": True}, "'mode' must be an integer"),
    ("tenant", "setOVXmode", {}, "missing required parameter 'mode'"),
    ("tenant", "setOVXmode", {"tenantId": "1", "mode": 1}, "'tenantId' must be an integer"),
]


@pytest.mark.parametrize(("service", "method", "params", "text"), BAD_CALLS)
def test_bad_params_change_nothing(
    rpc: Rpc,
    manager: NetworkManager,
    ovx_net: dict[str, Any],
    service: str,
    method: str,
    params: dict[str, Any],
    text: str,
) -> None:
    before = snapshot(manager)
    err = rpc.error(service, method, {"tenantId": ovx_net["tid"], **params})
    assert err["code"] == -32602, err
    assert text in err["message"], err
    assert snapshot(manager) == before


@pytest.mark.parametrize(
    "params",
    [
        {"controllerUrls": ["tcp:not-an-ip:6633"]},
        {"controllerUrls": "tcp:127.0.0.1:6633"},
        {"controllerUrls": ["tcp:127.0.0.1:6633"], "networkAddress": "10.0.0.0.0"},
        {"controllerUrls": ["tcp:127.0.0.1:6633"], "mask": 40},
        {"controllerUrls": ["tcp:127.0.0.1:6633"], "mask": "16"},
        {"networkAddress": "10.0.0.0"},
        {"controllerUrls": [], "scalability": "fastest"},
        {"controllerUrls": [], "scalability": "LITE"},
        {"controllerUrls": [], "scalability": 1},
        {"controllerUrls": [], "scalability": ["hop"]},
    ],
)
def test_bad_create_network_leaves_no_ovx_tenant(
    rpc: Rpc, manager: NetworkManager, params: dict[str, Any]
) -> None:
    before = snapshot(manager)
    err = rpc.error("tenant", "createNetwork", params)
    assert err["code"] == -32602
    assert snapshot(manager) == before  # in particular no half-made 'ovx' tenant


def envelope(client: TestClient, service: str, content: bytes) -> tuple[int, Any]:
    r = client.post(f"/{service}", content=content, headers=ovx_auth())
    return r.status_code, r.json() if r.content else None


@pytest.mark.parametrize(
    ("content", "code", "req_id"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700, None),
        (b"\xff\xfe", -32700, None),
        (b"[]", -32600, None),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "listVirtualNetworks"}]', -32600, None),
        (b'"createNetwork"', -32600, None),
        (b'{"id": 5, "method": "createNetwork", "params": {}}', -32600, 5),
        (b'{"jsonrpc": "1.0", "id": 5, "method": "createNetwork"}', -32600, 5),
        (b'{"jsonrpc": "2.0", "id": 5, "method": 7}', -32600, 5),
        (b'{"jsonrpc": "2.0", "id": 5, "method": "createNetwork", "params": 3}', -32600, 5),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "createNetwork"}', -32600, None),
        (b'{"jsonrpc": "2.0", "id": "x", "method": "createVirtualNetwork"}', -32601, "x"),
        (b'{"jsonrpc": "2.0", "id": "x", "method": "createNetwork", "params": [1]}', -32602, "x"),
    ],
)
def test_envelope_errors(
    client: TestClient, manager: NetworkManager, content: bytes, code: int, req_id: Any
) -> None:
    before = snapshot(manager)
    status, reply = envelope(client, "tenant", content)
    assert status == 200
    assert reply["jsonrpc"] == "2.0" and reply["id"] == req_id and "result" not in reply
    assert reply["error"]["code"] == code and reply["error"]["message"]
    assert snapshot(manager) == before


def test_method_not_found_names_the_service(rpc: Rpc) -> None:
    err = rpc.error("status", "createNetwork", {})
    assert err == {"code": -32601, "message": "method 'createNetwork' not found on /status"}
    assert rpc.error("tenant", "getPhysicalTopology")["code"] == -32601


def test_array_params_use_ovx_wording(rpc: Rpc) -> None:
    err = rpc.error("tenant", "startNetwork", [1])
    assert err["message"] == "startNetwork requires: OBJECT; got: ARRAY"


def test_bad_auth_is_401(client: TestClient, manager: NetworkManager) -> None:
    req = {"jsonrpc": "2.0", "id": "ovxctl", "method": "createNetwork", "params": {}}
    for headers in ({}, ovx_auth("wrong"), ovx_auth("")):
        r = client.post("/tenant", json=req, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].endswith('Basic realm="tenantvisor"')
        reply = r.json()
        assert reply["jsonrpc"] == "2.0" and reply["id"] is None
        assert reply["error"]["code"] == -32001
    assert manager.networks == {} and manager.tenants == {}


def test_notification_is_applied_without_reply(client: TestClient, manager: NetworkManager) -> None:
    req = {"jsonrpc": "2.0", "method": "createNetwork", "params": {"controllerUrls": []}}
    r = client.post("/tenant", json=req, headers=ovx_auth())
    assert r.status_code == 204 and r.content == b""
    assert len(manager.networks) == 1


def test_internal_error_is_32603(
    rpc: Rpc, manager: NetworkManager, ovx_net: dict[str, Any]
) -> None:
    def broken(event: str, net: object) -> None:
        raise RuntimeError("reconciler exploded")

    manager.listeners.append(broken)
    err = rpc.error("tenant", "startNetwork", {"tenantId": ovx_net["tid"]})
    assert err == {"code": -32603, "message": "internal error"}


def test_ovxctl_urllib_basic_auth_over_a_socket(live: LiveServer) -> None:
    """ovxctl's own transport: urllib's HTTPBasicAuthHandler answers our 401 challenge.

    It sends no credentials at first; only a 401 with a Basic challenge makes it retry with
    `admin:<password>`.  This runs against uvicorn on a real port, as ovxctl would.
    """
    url = f"{live.url}/tenant"
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, url, "admin", ADMIN)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(passwords))
    body = {
        "id": "ovxctl",
        "method": "createNetwork",
        "jsonrpc": "2.0",
        "params": {
            "controllerUrls": ["tcp:127.0.0.1:6633"],
            "networkAddress": "10.0.0.0",
            "mask": 16,
        },
    }
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json-rpc"}
    )
    with opener.open(request, timeout=10) as resp:
        reply = json.loads(resp.read())
    assert reply["result"]["tenantId"] == 1
    assert live.manager.networks[1].controller_urls == ["tcp:127.0.0.1:6633"]


# --- big switches, internal routes, manual and backup vlink paths, status mappings ---------------
def test_ovx_big_switch_routes_and_paths(
    ring_client: TestClient, ring_manager: NetworkManager
) -> None:
    """An ovxctl session on conftest's ring: r1+r2 as a big switch with a manual route, a
    manual vlink with two paths, an spf vlink with a backup, then the status mappings."""
    rpc = Rpc(ring_client, ovx_auth())
    tid = rpc(
        "tenant",
        "createNetwork",
        {"controllerUrls": ["tcp:127.0.0.1:6633"], "networkAddress": "10.0.0.0", "mask": 16},
    )["tenantId"]
    big = rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [1, 2], "dpid": 0})
    assert big == {  # OVXBigSwitch.getDBObject: spf with one backup by default
        "vdpid": OVX | 1,
        "dpids": [1, 2],
        "tenantId": tid,
        "algorithm": "spf",
        "backup_num": 1,
    }
    for d in (3, 4):
        rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [d]})
    for d, port, vport in ((1, 1, 1), (2, 1, 2), (2, 3, 3), (3, 2, 1), (3, 3, 2), (4, 2, 1)):
        reply = rpc("tenant", "createPort", {"tenantId": tid, "dpid": d, "port": port})
        assert reply["vport"] == vport

    routing = {"tenantId": tid, "vdpid": OVX | 1, "algorithm": "manual", "backup_num": 0}
    assert rpc("tenant", "setInternalRouting", routing) == {
        "vdpid": OVX | 1,
        "dpids": [1, 2],
        "tenantId": tid,
        "algorithm": "manual",
        "backup_num": 0,
    }
    # ovxctl's translate_path leaves a trailing comma
    route = {"tenantId": tid, "vdpid": OVX | 1, "srcPort": 1, "dstPort": 2}
    reply = rpc("tenant", "connectRoute", {**route, "path": "1/2-2/2,", "priority": 100})
    assert reply == {
        "vdpid": OVX | 1,
        "srcPort": 1,
        "dstPort": 2,
        "priority": 100,
        "routeId": 1,
        "path": [{"srcDpid": 1, "srcPort": 2, "dstDpid": 2, "dstPort": 2}],
        "tenantId": tid,
    }
    routes = ring_manager.networks[tid].switches[OVX | 1].routes
    assert [(r.src_vport, r.dst_vport) for r in routes.values()] == [(1, 2), (2, 1)]

    link = {"tenantId": tid, "srcDpid": OVX | 1, "srcPort": 3, "dstDpid": OVX | 2, "dstPort": 1}
    lk = rpc("tenant", "connectLink", {**link, "algorithm": "manual", "backup_num": 0})
    assert (lk["linkId"], lk["algorithm"], lk["path"], lk["priority"]) == (1, "manual", None, 0)
    set_path = {"tenantId": tid, "linkId": 1}
    lk = rpc("tenant", "setLinkPath", {**set_path, "path": "2/3-3/2", "priority": 100})
    assert (lk["priority"], lk["path"]) == (
        100,
        [{"srcDpid": 2, "srcPort": 3, "dstDpid": 3, "dstPort": 2}],
    )
    around = f"{DPIDS[2]}/2-{DPIDS[1]}/2,{DPIDS[1]}/3-{DPIDS[4]}/3,{DPIDS[4]}/2-{DPIDS[3]}/3"
    lk = rpc("tenant", "setLinkPath", {**set_path, "path": around, "priority": 50})
    assert lk["priority"] == 100 and len(lk["path"]) == 1  # the backup waits
    assert [p.priority for p in ring_manager.networks[tid].links[1].paths] == [100, 50]
    link = {"tenantId": tid, "srcDpid": OVX | 2, "srcPort": 2, "dstDpid": OVX | 3, "dstPort": 1}
    lk2 = rpc("tenant", "connectLink", {**link, "algorithm": "spf", "backup_num": 1})
    assert (lk2["algorithm"], lk2["backup_num"], lk2["priority"]) == ("spf", 1, 0)
    assert lk2["path"] == [{"srcDpid": 3, "srcPort": 3, "dstDpid": 4, "dstPort": 2}]
    host = {"tenantId": tid, "vdpid": OVX | 1, "vport": 2, "mac": "02:00:00:00:00:02"}
    rpc("tenant", "connectHost", host)

    phys = rpc("status", "getPhysicalTopology")

    def link_id(a: tuple[int, int], b: tuple[int, int]) -> int:
        for lk in phys["links"]:
            if (lk["src"], lk["dst"]) == (
                {"dpid": DPIDS[a[0]], "port": a[1]},
                {"dpid": DPIDS[b[0]], "port": b[1]},
            ):
                return int(lk["linkId"])
        raise AssertionError((a, b))

    assert rpc("status", "getVirtualSwitchMapping", {"tenantId": tid}) == {
        "00:a4:23:05:00:00:00:01": {
            "switches": [DPIDS[1], DPIDS[2]],
            "links": sorted([link_id((1, 2), (2, 2)), link_id((2, 2), (1, 2))]),
        },
        "00:a4:23:05:00:00:00:02": {"switches": [DPIDS[3]], "links": []},
        "00:a4:23:05:00:00:00:03": {"switches": [DPIDS[4]], "links": []},
    }
    assert rpc("status", "getVirtualLinkMapping", {"tenantId": tid}) == {
        "1": [[link_id((2, 3), (3, 2))], [link_id((3, 2), (2, 3))]],
        "2": [[link_id((3, 3), (4, 2))], [link_id((4, 2), (3, 3))]],
    }
    assert rpc("status", "getSubnet", {"tenantId": tid}) == "10.0.0.0/16"
    assert rpc("status", "getVirtualHosts", {"tenantId": tid}) == [
        {
            "hostId": 1,
            "ipAddress": "0.0.0.0",
            "mac": "02:00:00:00:00:02",
            "dpid": "00:a4:23:05:00:00:00:01",
            "port": 2,
        }
    ]
    assert rpc("status", "getPhysicalHosts") == [
        {"hostId": 1, "dpid": DPIDS[2], "port": 1, "mac": "02:00:00:00:00:02"}
    ]

    gone = {"tenantId": tid, "vdpid": OVX | 1, "routeId": 1}
    assert rpc("tenant", "disconnectRoute", gone) is None
    assert routes == {}  # both directions, as OVX's one route
    mapping = rpc("status", "getVirtualSwitchMapping", {"tenantId": tid})
    assert mapping["00:a4:23:05:00:00:00:01"]["links"] == []


@pytest.fixture
def ring_net(ring_client: TestClient) -> dict[str, Any]:
    """On the ring: big switch OVX|1 over r1+r2 (manual; vports 1: r1:1, 2: r2:1, 3: r2:3),
    OVX|2 on r3 (vports 1: r3:2, 2: r3:3), OVX|3 on r4 (vport 1: r4:2); manual vlink 1
    OVX|1/3 - OVX|2/1, spf vlink 2 OVX|2/2 - OVX|3/1; a network 'bare' without address."""
    rpc = Rpc(ring_client, ovx_auth())
    tid = rpc("tenant", "createNetwork", {"controllerUrls": []})["tenantId"]
    rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [1, 2]})
    rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [3]})
    rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [4]})
    for d, port in ((1, 1), (2, 1), (2, 3), (3, 2), (3, 3), (4, 2)):
        rpc("tenant", "createPort", {"tenantId": tid, "dpid": d, "port": port})
    routing = {"tenantId": tid, "vdpid": OVX | 1, "algorithm": "manual", "backup_num": 0}
    rpc("tenant", "setInternalRouting", routing)
    for (a, pa, b, pb), alg in (((1, 3, 2, 1), "manual"), ((2, 2, 3, 1), "spf")):
        link = {"srcDpid": OVX | a, "srcPort": pa, "dstDpid": OVX | b, "dstPort": pb}
        rpc("tenant", "connectLink", {"tenantId": tid, **link, "algorithm": alg, "backup_num": 0})
    return {"rpc": rpc, "tid": tid}


RING_BAD_CALLS: list[tuple[str, str, Any, str]] = [
    ("tenant", "createSwitch", {"dpids": [1, 2]}, "already hosts"),
    (
        "tenant",
        "setInternalRouting",
        {"vdpid": OVX | 2, "algorithm": "spf", "backup_num": 0},
        "only a big switch",
    ),
    (
        "tenant",
        "setInternalRouting",
        {"vdpid": OVX | 1, "algorithm": "ecmp", "backup_num": 0},
        "routing algorithm 'ecmp'",
    ),
    (
        "tenant",
        "setInternalRouting",
        {"vdpid": OVX | 1, "algorithm": "spf", "backup_num": 128},
        "backup_num 128 is out of range 0-8",
    ),
    ("tenant", "setInternalRouting", {"vdpid": OVX | 1, "algorithm": "spf"}, "'backup_num'"),
    (
        "tenant",
        "connectRoute",
        {"vdpid": OVX | 1, "srcPort": 1, "dstPort": 2, "path": "1/2-2", "priority": 1},
        "bad hop",
    ),
    (
        "tenant",
        "connectRoute",
        {"vdpid": OVX | 1, "srcPort": 1, "dstPort": 2, "path": "1/2-2/2", "priority": 70000},
        "priority 70000 is out of range",
    ),
    (
        "tenant",
        "connectRoute",
        {"vdpid": OVX | 1, "srcPort": 1, "dstPort": 2, "path": "1/3-4/3", "priority": 1},
        "must end on pswitch 2",
    ),
    (
        "tenant",
        "connectRoute",
        {"vdpid": OVX | 1, "srcPort": 1, "dstPort": 2, "path": [1, 2], "priority": 1},
        "'path' must be a string",
    ),
    ("tenant", "disconnectRoute", {"vdpid": OVX | 1, "routeId": 9}, "has no route 9"),
    ("tenant", "setLinkPath", {"linkId": 2, "path": "3/3-4/2", "priority": 1}, "manual"),
    ("tenant", "setLinkPath", {"linkId": 1, "path": "2/3-3/3", "priority": 1}, "physical link"),
    ("tenant", "setLinkPath", {"linkId": 1, "path": "2/3-3/2"}, "'priority'"),
    ("tenant", "setLinkPath", {"linkId": 7, "path": "2/3-3/2", "priority": 1}, "no vlink 7"),
    ("status", "getSubnet", {}, "without an address"),
    ("status", "getVirtualLinkMapping", {"tenantId": 77}, "no virtual network 77"),
    ("status", "getVirtualSwitchMapping", {"tenantId": "1"}, "'tenantId' must be an integer"),
]


@pytest.mark.parametrize(("service", "method", "params", "text"), RING_BAD_CALLS)
def test_bad_big_switch_and_path_params_change_nothing(
    ring_net: dict[str, Any],
    ring_manager: NetworkManager,
    service: str,
    method: str,
    params: dict[str, Any],
    text: str,
) -> None:
    before = snapshot(ring_manager)
    err = ring_net["rpc"].error(service, method, {"tenantId": ring_net["tid"], **params})
    assert err["code"] == -32602, err
    assert text in err["message"], err
    assert snapshot(ring_manager) == before


def test_big_switch_with_an_openflow_10_pswitch_is_refused(ring_net: dict[str, Any]) -> None:
    rpc = ring_net["rpc"]
    other = rpc("tenant", "createNetwork", {"controllerUrls": []})["tenantId"]
    err = rpc.error("tenant", "createSwitch", {"tenantId": other, "dpids": [4, 5]})
    assert "OpenFlow 1.0" in err["message"] and err["data"]["kind"] == "InvalidRequest"


# --- the scalability level: createNetwork's `scalability`, setScalability, Libera's setOVXmode ----
@pytest.mark.parametrize("level", ["exact", "app", "host", "hop", "lite"])
def test_create_network_takes_a_scalability_level(
    rpc: Rpc, manager: NetworkManager, level: str
) -> None:
    net = rpc("tenant", "createNetwork", {"controllerUrls": [], "scalability": level})
    assert set(net) == {"tenantId", "controllerUrls", "networkAddress", "mask", "isBooted"}
    assert manager.networks[net["tenantId"]].scalability == level


def test_create_network_without_scalability_is_exact(rpc: Rpc, manager: NetworkManager) -> None:
    tid = rpc("tenant", "createNetwork", {"controllerUrls": [], "scalability": None})["tenantId"]
    assert manager.networks[tid].scalability == "exact"


def test_set_scalability_and_libera_s_set_ovx_mode(
    rpc: Rpc, manager: NetworkManager, ovx_net: dict[str, Any]
) -> None:
    tid = ovx_net["tid"]
    events: list[tuple[str, str]] = []
    manager.listeners.append(lambda ev, net: events.append((ev, net.scalability)))
    reply = rpc("tenant", "setScalability", {"tenantId": tid, "scalability": "host"})
    assert reply == {
        "tenantId": tid,
        "controllerUrls": ["tcp:127.0.0.1:6633"],
        "networkAddress": 10 << 24,
        "mask": 16,
        "isBooted": False,
        "scalability": "host",
    }
    assert manager.networks[tid].scalability == "host" and events == []  # not started
    rpc("tenant", "startNetwork", {"tenantId": tid})
    # Libera's numbers: 0 exact, 1 lite, 2 hop
    for mode, level in ((1, "lite"), (2, "hop"), (0, "exact")):
        reply = rpc("tenant", "setOVXmode", {"tenantId": tid, "mode": mode})
        assert reply["scalability"] == level == manager.networks[tid].scalability
        assert reply["isBooted"] is True
    rpc("tenant", "setOVXmode", {"tenantId": tid, "mode": 0})  # unchanged: nothing announced
    rpc("tenant", "setScalability", {"tenantId": tid, "scalability": "app"})
    assert events == [
        ("started", "host"),
        ("changed", "lite"),
        ("changed", "hop"),
        ("changed", "exact"),
        ("changed", "app"),
    ]


def test_another_tenant_cannot_set_the_level(client: TestClient, manager: NetworkManager) -> None:
    alice, bob = manager.create_tenant("alice"), manager.create_tenant("bob")
    a, b = Rpc(client, ovx_auth(alice.token)), Rpc(client, bearer(bob.token))
    tid = a("tenant", "createNetwork", {"controllerUrls": [], "scalability": "hop"})["tenantId"]
    before = snapshot(manager)
    for method, params in (
        ("setScalability", {"tenantId": tid, "scalability": "lite"}),
        ("setOVXmode", {"tenantId": tid, "mode": 1}),
    ):
        err = b.error("tenant", method, params)
        assert err["code"] == -32602 and err["message"] == f"no virtual network {tid}"
        assert err["data"] == {"http_status": 404, "kind": "NotFound"}
    assert snapshot(manager) == before
    assert a("tenant", "setOVXmode", {"tenantId": tid, "mode": 1})["scalability"] == "lite"


def test_migrate_host_is_the_admins_and_moves_the_vport_with_it(
    client: TestClient, manager: NetworkManager
) -> None:
    """Ours (issue 10): the admin says a host is now on s3 port 2; its tenant cannot say so
    (403 as -32602), nor can anyone move it onto a port facing another pswitch."""
    alice = manager.create_tenant("alice")
    a = Rpc(client, ovx_auth(alice.token))
    tid = a("tenant", "createNetwork", {"controllerUrls": ["tcp:127.0.0.1:6633"]})["tenantId"]
    vdpid = a("tenant", "createSwitch", {"tenantId": tid, "dpids": [1]})["vdpid"]
    vport = a("tenant", "createPort", {"tenantId": tid, "dpid": 1, "port": 1})["vport"]
    hid = a("tenant", "connectHost", {"tenantId": tid, "vdpid": vdpid, "vport": vport,
                                      "mac": "02:00:00:00:00:01"})["hostId"]  # fmt: skip
    params = {"tenantId": tid, "hostId": hid, "dpid": 3, "port": 2}
    err = a.error("tenant", "migrateHost", params)
    assert err["data"] == {"http_status": 403, "kind": "Forbidden"}
    admin = Rpc(client, ovx_auth())
    got = admin("tenant", "migrateHost", params)
    assert (got["vdpid"], got["vport"], got["dpid"], got["port"]) == (vdpid, vport, 3, 2)
    assert manager.networks[tid].hosts[hid].location == (3, 2)
    seen = {r["hostId"]: (r["dpid"], r["port"]) for r in admin("status", "getPhysicalHosts")}
    assert seen[hid] == ("00:00:00:00:00:00:00:03", 2)  # the admin sees where it is
    mine = {r["hostId"]: (r["dpid"], r["port"]) for r in a("status", "getPhysicalHosts")}
    assert mine[hid] == ("00:00:00:00:00:00:00:01", 1)  # its tenant: the vport's, as ever
    err = admin.error("tenant", "migrateHost", {**params, "dpid": 1, "port": 3})
    assert err["data"]["kind"] == "InvalidRequest"
    assert manager.networks[tid].hosts[hid].location == (3, 2)


def test_create_port_exclusive_and_get_virtual_switch_ports(
    client: TestClient, manager: NetworkManager
) -> None:
    """Ours (issue 11): createPort's optional `exclusive`; a vport of another network on
    that port is refused as -32602 carrying the 409; getVirtualSwitchPorts shows the mode."""
    alice, bob = manager.create_tenant("alice"), manager.create_tenant("bob")
    a, b = Rpc(client, ovx_auth(alice.token)), Rpc(client, ovx_auth(bob.token))
    nets = []
    for r in (a, b):
        tid = r("tenant", "createNetwork", {"controllerUrls": ["tcp:127.0.0.1:6633"]})["tenantId"]
        r("tenant", "createSwitch", {"tenantId": tid, "dpids": [1]})
        nets.append(tid)
    ta, tb = nets
    got = a("tenant", "createPort", {"tenantId": ta, "dpid": 1, "port": 2, "exclusive": True})
    assert (got["vport"], got["exclusive"]) == (1, True)
    plain = a("tenant", "createPort", {"tenantId": ta, "dpid": 1, "port": 1})
    assert plain["exclusive"] is False  # left out: OVX's createPort, a plain vport
    ports = a("status", "getVirtualSwitchPorts", {"tenantId": ta, "vdpid": OVX | 1})
    assert ports == {
        "1": {"dpid": DPIDS[1], "port": 2, "exclusive": True},
        "2": {"dpid": DPIDS[1], "port": 1, "exclusive": False},
    }
    before = snapshot(manager)
    err = b.error("tenant", "createPort", {"tenantId": tb, "dpid": 1, "port": 2})
    assert err["code"] == -32602 and "held exclusively" in err["message"]
    assert err["data"] == {"http_status": 409, "kind": "Conflict"}
    err = b.error("tenant", "createPort", {"tenantId": tb, "dpid": 1, "port": 1,
                                           "exclusive": True})  # fmt: skip
    assert err["data"] == {"http_status": 409, "kind": "Conflict"}
    err = b.error("tenant", "createPort", {"tenantId": tb, "dpid": 1, "port": 3,
                                           "exclusive": "true"})  # fmt: skip
    assert err["code"] == -32602 and "'exclusive' must be true or false" in err["message"]
    err = b.error("status", "getVirtualSwitchPorts", {"tenantId": ta, "vdpid": OVX | 1})
    assert err["data"]["kind"] == "NotFound"  # not bob's to see
    err = a.error("status", "getVirtualSwitchPorts", {"tenantId": ta, "vdpid": OVX | 9})
    assert err["code"] == -32602 and "no vswitch" in err["message"]
    assert snapshot(manager) == before


def test_set_network_limits_is_the_admins_and_get_network_limits_shows_them(
    client: TestClient, manager: NetworkManager
) -> None:
    """Ours (issue 11): the admin's override of the default data-plane limits, in OVX's
    spelling; the tenant may read its network's, not set them (403 as -32602)."""
    from tenantvisor.virtual.model import Limits

    manager.default_limits = Limits(vport_pps=2000)
    alice = manager.create_tenant("alice")
    a = Rpc(client, ovx_auth(alice.token))
    tid = a("tenant", "createNetwork", {"controllerUrls": ["tcp:127.0.0.1:6633"]})["tenantId"]
    err = a.error("tenant", "setNetworkLimits", {"tenantId": tid, "vlinkPps": 300})
    assert err["data"] == {"http_status": 403, "kind": "Forbidden"}
    admin = Rpc(client, ovx_auth())
    got = admin("tenant", "setNetworkLimits", {"tenantId": tid, "vlinkPps": 300, "vportPps": 0})
    assert got["override"] == {"vportPps": 0, "vlinkPps": 300}
    assert got["effective"] == {"vportPps": 0, "vportKbps": 0, "vlinkPps": 300, "vlinkKbps": 0}
    assert manager.networks[tid].limits == Limits(vport_pps=0, vlink_pps=300)
    mine = a("status", "getNetworkLimits", {"tenantId": tid})
    assert mine["override"] == got["override"] and mine["tenantId"] == tid
    err = admin.error("tenant", "setNetworkLimits",
                      {"tenantId": tid, "vportPps": 5, "vportKbps": 5})  # fmt: skip
    assert err["code"] == -32602 and "not both" in err["message"]
    err = admin.error("tenant", "setNetworkLimits", {"tenantId": tid, "vportPps": "5"})
    assert err["code"] == -32602 and "'vportPps' must be an integer" in err["message"]
    assert manager.networks[tid].limits == Limits(vport_pps=0, vlink_pps=300)
