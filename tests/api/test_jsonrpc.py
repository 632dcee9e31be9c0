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

    assert port(1, 1) == {"dpid": 1, "port": 1, "vport": 1, "vdpid": OVX | 1, "tenantId": tid}
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
        "backup_num": 0,  # honest: no backup paths are computed
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
            "algorithm": "manual",
            "backup_num": 1,
        },
        "manual",
    ),
    (
        "tenant",
        "connectLink",
        {"srcDpid": OVX | 1, "srcPort": 2, "dstDpid": OVX | 2, "dstPort": 1, "backup_num": 900},
        "backup_num",
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
