"""The REST API: a full build-up and tear-down, refusals that change nothing, OpenAPI."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import pytest

from tenantvisor.api.app import create_app
from tenantvisor.virtual.manager import NetworkManager
from tests.api.conftest import ADMIN, bearer, quiet_testclient, snapshot

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

DPID = {n: f"00:00:00:00:00:00:00:{n:02x}" for n in range(1, 6)}


def new_tenant(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/v1/tenants", json={"name": name}, headers=bearer(ADMIN))
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "name", "token"}
    return bearer(body["token"])


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def test_tenants_admin_flow(client: TestClient, manager: NetworkManager) -> None:
    A = bearer(ADMIN)
    t = ok(client.post("/v1/tenants", json={"name": "alice"}, headers=A), 201)
    assert t["name"] == "alice" and t["token"] == manager.tenants[t["id"]].token
    r = client.post("/v1/tenants", json={"name": "alice"}, headers=A)
    assert r.status_code == 409
    r = client.post("/v1/tenants", json={"name": "bad name!"}, headers=A)
    assert r.status_code == 400
    ok(client.post("/v1/networks", json={"tenant_id": t["id"]}, headers=A), 201)
    tenants = ok(client.get("/v1/tenants", headers=A))
    assert tenants == [{"id": t["id"], "name": "alice", "networks": [1]}]  # no token listed
    assert ok(client.get(f"/v1/tenants/{t['id']}", headers=A))["networks"] == [1]
    ok(client.delete(f"/v1/tenants/{t['id']}", headers=A), 204)
    assert manager.tenants == {} and manager.networks == {}
    assert client.delete(f"/v1/tenants/{t['id']}", headers=A).status_code == 404


def test_physical_topology(client: TestClient) -> None:
    T = new_tenant(client, "alice")  # tenants need it to pick pswitches
    topo = ok(client.get("/v1/physical/topology", headers=T))
    assert [s["dpid"] for s in topo["switches"]] == [1, 2, 3, 4, 5]
    s1 = topo["switches"][0]
    assert s1["dpid_str"] == "00:00:00:00:00:00:00:01"
    assert s1["ports"][0] == {
        "port_no": 1,
        "name": "s1-eth1",
        "hw_addr": "02:00:00:00:01:01",
        "up": True,
    }
    assert s1["qinq_ok"] is None  # not probed either
    expected = {"src_dpid": 1, "src_port": 3, "dst_dpid": 2, "dst_port": 3, "mtu_ok": None}
    assert expected in topo["links"]  # mtu_ok: not measured (no LLDP in this test)
    assert len(topo["links"]) == 6  # three links, both directions


def test_full_flow(client: TestClient, manager: NetworkManager) -> None:
    T = new_tenant(client, "alice")
    net = ok(
        client.post(
            "/v1/networks",
            json={
                "controller_urls": ["tcp:127.0.0.1:6653", "ptcp:6654"],
                "network_address": "10.0.0.0",
                "mask": 16,
            },
            headers=T,
        ),
        201,
    )
    n = net["id"]
    assert net["controller_urls"] == ["tcp:127.0.0.1:6653", "ptcp:6654:0.0.0.0"]
    assert (net["started"], net["switches"], net["links"], net["hosts"]) == (False, [], [], [])

    # vswitches: dpids in every notation
    sws = [
        ok(client.post(f"/v1/networks/{n}/switches", json={"dpids": [d]}, headers=T), 201)
        for d in (DPID[1], "0x2", 3)
    ]
    assert [s["dpid"] for s in sws] == [1, 2, 3]
    assert [(s["dpids"], s["routing"], s["backup_num"], s["routes"]) for s in sws] == [
        ([d], "spf", 0, []) for d in (1, 2, 3)
    ]
    assert sws[1]["dpids_str"] == [DPID[2]]
    v1, v2, v3 = (s["vdpid"] for s in sws)
    for sw in sws:  # OVX's colon hex, 8 bytes
        assert re.fullmatch(r"([0-9a-f]{2}:){7}[0-9a-f]{2}", sw["vdpid_str"])
        assert int(sw["vdpid_str"].replace(":", ""), 16) == sw["vdpid"]
    custom = ok(
        client.post(
            f"/v1/networks/{n}/switches",
            json={"dpids": [5], "vdpid": "00:00:00:00:00:00:aa:01"},
            headers=T,
        ),
        201,
    )
    assert custom["vdpid"] == 0xAA01

    def port(dpid: int, p: int) -> dict[str, Any]:
        body = {"dpid": dpid, "port": p}
        reply: dict[str, Any] = ok(
            client.post(f"/v1/networks/{n}/ports", json=body, headers=T), 201
        )
        return reply

    h1 = port(1, 1)
    assert h1 == {
        "number": 1,
        "dpid": 1,
        "port": 1,
        "kind": "edge",
        "link_id": None,
        "exclusive": False,
        "vdpid": v1,
        "vdpid_str": sws[0]["vdpid_str"],
    }
    l1 = port(1, 3)
    l2a, l2b = port(2, 3), port(2, 4)
    l3 = port(3, 3)
    h3 = port(3, 1)
    assert [p["kind"] for p in (l1, l2a, l2b, l3, h3)] == ["link"] * 4 + ["edge"]

    link = {"src_vdpid": v1, "src_vport": l1["number"], "dst_vdpid": v2, "dst_vport": l2a["number"]}
    lk1 = ok(client.post(f"/v1/networks/{n}/links", json=link, headers=T), 201)
    assert lk1["path"] == [{"src_dpid": 1, "src_port": 3, "dst_dpid": 2, "dst_port": 3}]
    assert (lk1["algorithm"], lk1["backup_num"], lk1["paths"], lk1["backup_paths"]) == (
        "spf",
        0,
        [],
        [],
    )
    link = {"src_vdpid": v2, "src_vport": l2b["number"], "dst_vdpid": v3, "dst_vport": l3["number"]}
    lk2 = ok(client.post(f"/v1/networks/{n}/links", json=link, headers=T), 201)

    host = {"vdpid": v1, "vport": h1["number"], "mac": "02:00:00:00:00:01"}
    hh1 = ok(client.post(f"/v1/networks/{n}/hosts", json=host, headers=T), 201)
    assert hh1 == {
        "id": hh1["id"],
        "vdpid": v1,
        "vport": 1,
        "mac": "02:00:00:00:00:01",
        "location": None,
    }  # where it is: the admin's view of a moved host
    host = {"vdpid": v3, "vport": h3["number"], "mac": 0x020000000003}  # integer MAC
    hh3 = ok(client.post(f"/v1/networks/{n}/hosts", json=host, headers=T), 201)
    assert hh3["mac"] == "02:00:00:00:00:03"

    events: list[str] = []
    manager.listeners.append(lambda ev, _net: events.append(ev))
    assert ok(client.post(f"/v1/networks/{n}/start", headers=T))["started"] is True
    assert events == ["started"]

    vn = ok(client.get(f"/v1/networks/{n}", headers=T))
    assert vn["started"] and vn["network_address"] == "10.0.0.0" and vn["mask"] == 16
    assert [s["vdpid"] for s in vn["switches"]] == sorted([v1, v2, v3, 0xAA01])
    s1 = next(s for s in vn["switches"] if s["vdpid"] == v1)
    assert s1["ports"] == [
        {"number": 1, "dpid": 1, "port": 1, "kind": "edge", "link_id": None, "exclusive": False},
        {
            "number": 2,
            "dpid": 1,
            "port": 3,
            "kind": "link",
            "link_id": lk1["id"],
            "exclusive": False,
        },
    ]
    assert [lk["id"] for lk in vn["links"]] == [lk1["id"], lk2["id"]]
    assert vn["links"][1]["path"] == [{"src_dpid": 2, "src_port": 4, "dst_dpid": 3, "dst_port": 3}]
    assert [h["mac"] for h in vn["hosts"]] == ["02:00:00:00:00:01", "02:00:00:00:00:03"]
    assert [x["id"] for x in ok(client.get("/v1/networks", headers=T))] == [n]

    # changes to a started network are announced to the daemon's reconciler
    r = client.put(
        f"/v1/networks/{n}/controllers", json={"controller_urls": ["tcp:10.0.0.9:6633"]}, headers=T
    )
    assert ok(r)["controller_urls"] == ["tcp:10.0.0.9:6633"]
    assert events == ["started", "changed"]

    # tear down, piece by piece
    ok(client.delete(f"/v1/networks/{n}/hosts/{hh3['id']}", headers=T), 204)
    ok(client.delete(f"/v1/networks/{n}/links/{lk2['id']}", headers=T), 204)
    ok(client.delete(f"/v1/networks/{n}/switches/{v3}/ports/{l3['number']}", headers=T), 204)
    ok(client.delete(f"/v1/networks/{n}/switches/0xaa01", headers=T), 204)
    assert ok(client.post(f"/v1/networks/{n}/stop", headers=T))["started"] is False
    vn = ok(client.get(f"/v1/networks/{n}", headers=T))
    assert len(vn["links"]) == 1 and len(vn["hosts"]) == 1 and len(vn["switches"]) == 3
    ok(client.delete(f"/v1/networks/{n}", headers=T), 204)
    assert client.get(f"/v1/networks/{n}", headers=T).status_code == 404
    assert manager.networks == {}


@pytest.fixture
def built(client: TestClient, manager: NetworkManager) -> dict[str, Any]:
    """Tenant alice with network: vswitches on s1, s2, s4; edge vport s1:1, link vports."""
    T = new_tenant(client, "alice")
    n = ok(client.post("/v1/networks", json={}, headers=T), 201)["id"]
    v = {
        d: ok(client.post(f"/v1/networks/{n}/switches", json={"dpids": [d]}, headers=T), 201)[
            "vdpid"
        ]
        for d in (1, 2, 4)
    }
    ports = {
        (d, p): ok(
            client.post(f"/v1/networks/{n}/ports", json={"dpid": d, "port": p}, headers=T), 201
        )["number"]
        for d, p in ((1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (4, 3))
    }
    return {"T": T, "n": n, "v": v, "ports": ports}


def refused(
    client: TestClient,
    manager: NetworkManager,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
    content: bytes | None = None,
) -> tuple[int, str]:
    """Send a request that must be refused; assert the manager did not change at all."""
    before = snapshot(manager)
    if content is not None:
        headers = {**headers, "Content-Type": "application/json"}
        r = client.request(method, path, content=content, headers=headers)
    else:
        r = client.request(method, path, json=body, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()) == {"error"} and "Traceback" not in r.text
    assert snapshot(manager) == before
    return r.status_code, str(r.json()["error"])


def test_bad_input_changes_nothing(
    client: TestClient, manager: NetworkManager, built: dict[str, Any]
) -> None:
    T, n, v, ports = built["T"], built["n"], built["v"], built["ports"]
    net = f"/v1/networks/{n}"

    def no(method: str, path: str, body: Any = None, content: bytes | None = None) -> Any:
        return refused(client, manager, method, net + path, T, body, content)

    # switches
    assert no("POST", "/switches", {"dpids": [99]}) == (
        404,
        "unknown physical dpid 0x0000000000000063",
    )
    assert no("POST", "/switches", {"dpids": [1]})[0] == 409  # pswitch already hosts one
    assert no("POST", "/switches", {"dpids": [3], "vdpid": v[1]})[0] == 409
    code, msg = no("POST", "/switches", {"dpids": [3, 5]})  # a big switch in two pieces
    assert code == 400 and "is not joined to" in msg
    assert no("POST", "/switches", {"dpids": [3, 3]})[0] == 400
    assert no("POST", "/switches", {"dpids": [3, 5], "routing": "ecmp"})[0] == 400
    assert no("POST", "/switches", {"dpids": [3], "backup_num": "1"})[0] == 422
    assert no("POST", "/switches", {"dpids": []})[0] == 422
    assert no("POST", "/switches", {"dpids": "1"})[0] == 422
    assert no("POST", "/switches", {"dpids": [True]})[0] == 422
    code, msg = no("POST", "/switches", {"dpids": ["zz:1"]})
    assert (code, msg) == (
        422,
        "dpids.0: dpid 'zz:1' is not a datapath id (decimal, 0x-hex or colon hex)",
    )
    assert no("POST", "/switches", {"dpids": [2**64]})[0] == 422
    assert no("POST", "/switches", {"dpid": [3]})[0] == 422  # unknown field: a typo
    code, msg = no("DELETE", "/switches/zz")
    assert code == 400 and msg.startswith("vdpid 'zz' is not a datapath id")
    assert no("DELETE", "/switches/12345")[0] == 404

    # ports
    assert no("POST", "/ports", {"dpid": 99, "port": 1})[0] == 404
    code, msg = no("POST", "/ports", {"dpid": 1, "port": 77})
    assert (code, msg) == (404, "pswitch 0x0000000000000001 has no port 77")
    assert no("POST", "/ports", {"dpid": 3, "port": 1})[0] == 404  # no vswitch on s3
    assert no("POST", "/ports", {"dpid": 1, "port": 1})[0] == 409  # already an edge vport
    assert no("POST", "/ports", {"dpid": 1, "port": 2, "vdpid": v[2]})[0] == 400
    code, msg = no("POST", "/ports", {"dpid": 1, "port": "2"})
    assert (code, msg) == (422, "port: Input should be a valid integer")
    assert no("POST", "/ports", {"dpid": 1})[0] == 422
    assert no("DELETE", f"/switches/{v[1]}/ports/99")[0] == 404
    assert no("DELETE", f"/switches/{v[1]}/ports/x")[0] == 422

    # vlinks
    edge = {
        "src_vdpid": v[1],
        "src_vport": ports[1, 1],
        "dst_vdpid": v[2],
        "dst_vport": ports[2, 3],
    }
    code, msg = no("POST", "/links", edge)
    assert code == 400 and "edge port" in msg
    island = {**edge, "src_vport": ports[1, 3], "dst_vdpid": v[4], "dst_vport": ports[4, 3]}
    code, msg = no("POST", "/links", island)
    assert code == 400 and "no physical path" in msg
    same = {
        "src_vdpid": v[1],
        "src_vport": ports[1, 3],
        "dst_vdpid": v[1],
        "dst_vport": ports[1, 3],
    }
    assert no("POST", "/links", same)[0] == 400
    assert no("POST", "/links", {**edge, "dst_vport": 42})[0] == 404
    assert no("POST", "/links", {**edge, "src_vport": None})[0] == 422
    assert no("DELETE", "/links/5")[0] == 404

    # hosts
    host = {"vdpid": v[1], "vport": ports[1, 1], "mac": "02:00:00:00:00:01"}
    ok(client.post(net + "/hosts", json=host, headers=T), 201)
    assert no("POST", "/hosts", {**host, "mac": "01:00:5e:00:00:01"})[0] == 400  # multicast
    assert no("POST", "/hosts", {**host, "mac": "not-a-mac"})[0] == 400
    assert no("POST", "/hosts", {**host, "mac": True})[0] == 422
    assert no("POST", "/hosts", {**host, "vport": ports[1, 3]})[0] == 400  # a link vport
    assert no("DELETE", "/hosts/77")[0] == 404

    # networks
    def new_net(body: Any) -> tuple[int, str]:
        return refused(client, manager, "POST", "/v1/networks", T, body)

    code, msg = new_net({"controller_urls": ["tcp:nohost:1"]})
    assert code == 400 and "is not an IP address" in msg
    assert new_net({"controller_urls": ["udp:1.2.3.4:5"]})[0] == 400
    assert new_net({"controller_urls": "tcp:1.2.3.4:5"})[0] == 422
    assert new_net({"network_address": "10.0.0"})[0] == 400
    assert new_net({"mask": 33})[0] == 400
    assert new_net({"mask": "16"})[0] == 422
    code, msg = new_net({"scalability": "LITE"})  # levels are lower case
    assert code == 400 and "expected one of exact, app, host, hop, lite" in msg
    assert new_net({"scalability": "fastest"})[0] == 400
    assert new_net({"scalability": 2})[0] == 422
    assert no("PUT", "/controllers", {"controller_urls": ["tcp:1.2.3.4:0"]})[0] == 400
    assert refused(client, manager, "GET", "/v1/networks/abc", T)[0] == 422
    assert refused(client, manager, "GET", "/v1/networks/999", T) == (404, "no virtual network 999")

    # malformed JSON and wrong content
    code, msg = no("POST", "/switches", content=b'{"dpids": [1,')
    assert code == 400 and msg.startswith("request body is not valid JSON")
    assert no("POST", "/switches", content=b"")[0] in (400, 422)
    assert no("POST", "/switches", content=b"[1, 2]")[0] == 422
    assert refused(client, manager, "GET", "/v1/nothing-here", T) == (404, "Not Found")
    assert refused(client, manager, "PATCH", net, T)[0] == 405


def test_duplicate_mac_on_one_physical_port(client: TestClient, manager: NetworkManager) -> None:
    """Hosts are (physical port, MAC): two tenants' hosts on one port need distinct MACs."""
    nets = []
    for name in ("alice", "bob"):
        T = new_tenant(client, name)
        n = ok(client.post("/v1/networks", json={}, headers=T), 201)["id"]
        vd = ok(client.post(f"/v1/networks/{n}/switches", json={"dpids": [1]}, headers=T), 201)
        vp = ok(client.post(f"/v1/networks/{n}/ports", json={"dpid": 1, "port": 1}, headers=T), 201)
        nets.append((T, n, vd["vdpid"], vp["number"]))
    (Ta, na, va, pa), (Tb, nb, vb, pb) = nets
    host = {"vdpid": va, "vport": pa, "mac": "02:00:00:00:00:01"}
    ok(client.post(f"/v1/networks/{na}/hosts", json=host, headers=Ta), 201)
    host = {"vdpid": vb, "vport": pb, "mac": "02:00:00:00:00:01"}
    code, msg = refused(client, manager, "POST", f"/v1/networks/{nb}/hosts", Tb, host)
    assert code == 409 and "distinct MACs" in msg
    # overlapping MACs are fine on different physical ports (tenants may reuse addresses)
    vp2 = ok(client.post(f"/v1/networks/{nb}/ports", json={"dpid": 1, "port": 2}, headers=Tb), 201)
    host["vport"] = vp2["number"]
    ok(client.post(f"/v1/networks/{nb}/hosts", json=host, headers=Tb), 201)


def test_status(manager: NetworkManager) -> None:
    with quiet_testclient()(create_app(manager, status=lambda: {"sessions": 3})) as c:
        assert ok(c.get("/v1/status", headers=bearer(ADMIN))) == {"sessions": 3}
    with quiet_testclient()(create_app(manager)) as c:
        st = ok(c.get("/v1/status", headers=bearer(ADMIN)))
        assert st["physical_switches"] == 5 and st["networks"] == 0


def test_crash_is_a_bare_500(manager: NetworkManager, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("secret internal detail")

    app = create_app(manager, status=broken)
    with (
        quiet_testclient()(app) as c,
        caplog.at_level(logging.ERROR, logger="tenantvisor.api.app"),
    ):
        r = c.get("/v1/status", headers=bearer(ADMIN))
    assert r.status_code == 500
    assert r.json() == {"error": "internal error"}
    assert "secret" not in r.text
    assert "secret internal detail" in caplog.text  # logged for the operator, with traceback


def test_openapi_served(client: TestClient) -> None:
    spec = ok(client.get("/openapi.json"))
    for path in (
        "/v1/tenants",
        "/v1/physical/topology",
        "/v1/networks",
        "/v1/networks/{net_id}",
        "/v1/networks/{net_id}/start",
        "/v1/networks/{net_id}/scalability",
        "/v1/networks/{net_id}/switches",
        "/v1/networks/{net_id}/switches/{vdpid}/ports/{vport}",
        "/v1/networks/{net_id}/links/{link_id}",
        "/v1/networks/{net_id}/links/{link_id}/paths/{priority}",
        "/v1/networks/{net_id}/switches/{vdpid}/routing",
        "/v1/networks/{net_id}/switches/{vdpid}/routes",
        "/v1/networks/{net_id}/switches/{vdpid}/routes/{route_id}",
        "/v1/networks/{net_id}/hosts",
        "/v1/status",
        "/tenant",
        "/status",
    ):
        assert path in spec["paths"], path
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "basicAuth"}
    assert "NetworkOut" in spec["components"]["schemas"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --- big switches, routes, manual and backup vlink paths (on the ring of conftest.build_ring) ----
def hops(*text: str) -> list[dict[str, int]]:
    """'1/2-2/2' -> the HopOut dict, for comparing replies."""
    out = []
    for t in text:
        a, b = t.split("-")
        (sd, sp), (dd, dp) = (x.split("/") for x in (a, b))
        out.append(
            {"src_dpid": int(sd), "src_port": int(sp), "dst_dpid": int(dd), "dst_port": int(dp)}
        )
    return out


@pytest.fixture
def ring(ring_client: TestClient, ring_manager: NetworkManager) -> dict[str, Any]:
    """A big switch over r1+r2 (manual routing) with edge vports 1 (r1:1), 2 (r2:1) and a
    link vport 3 (r2:3, facing r3); vswitches on r3 (vport 1: r3:2, vport 2: r3:3) and r4
    (vport 1: r4:2)."""
    client = ring_client
    T = new_tenant(client, "alice")
    n = ok(client.post("/v1/networks", json={}, headers=T), 201)["id"]
    net = f"/v1/networks/{n}"
    big = ok(
        client.post(net + "/switches", json={"dpids": [1, "0x2"], "routing": "manual"}, headers=T),
        201,
    )
    v3 = ok(client.post(net + "/switches", json={"dpids": [3]}, headers=T), 201)["vdpid"]
    v4 = ok(client.post(net + "/switches", json={"dpids": [4]}, headers=T), 201)["vdpid"]
    for d, p in ((1, 1), (2, 1), (2, 3), (3, 2), (3, 3), (4, 2)):
        ok(client.post(net + "/ports", json={"dpid": d, "port": p}, headers=T), 201)
    return {"c": client, "m": ring_manager, "T": T, "net": net, "big": big, "v3": v3, "v4": v4}


def test_big_switch_routing_and_routes(ring: dict[str, Any]) -> None:
    c, T, net, big = ring["c"], ring["T"], ring["net"], ring["big"]
    assert (big["dpids"], big["dpids_str"], big["dpid"]) == ([1, 2], [DPID[1], DPID[2]], 1)
    assert (big["routing"], big["backup_num"], big["routes"]) == ("manual", 0, [])
    sw = f"{net}/switches/{big['vdpid_str']}"

    body = {"src_vport": 1, "dst_vport": 2, "path": "1/2-2/2", "priority": 10, "both_ways": True}
    r = ok(c.post(sw + "/routes", json=body, headers=T), 201)
    assert r == {
        "id": 1,
        "src_vport": 1,
        "dst_vport": 2,
        "priority": 10,
        "path": hops("1/2-2/2"),
        "live": True,
    }
    listed = ok(
        c.post(
            sw + "/routes",
            json={
                **body,
                "path": hops("2/2-1/2"),
                "src_vport": 3,
                "dst_vport": 1,
                "both_ways": False,
                "priority": 7,
            },
            headers=T,
        ),
        201,
    )
    assert listed["id"] == 3
    vn = ok(c.get(net, headers=T))
    routes = vn["switches"][0]["routes"]
    assert [(x["id"], x["src_vport"], x["dst_vport"]) for x in routes] == [
        (1, 1, 2),
        (2, 2, 1),
        (3, 3, 1),
    ]
    assert routes[1]["path"] == hops("2/2-1/2")

    sw_out = ok(c.put(sw + "/routing", json={"algorithm": "spf", "backup_num": 1}, headers=T))
    assert (sw_out["routing"], sw_out["backup_num"], len(sw_out["routes"])) == ("spf", 1, 3)
    ok(c.put(sw + "/routing", json={"algorithm": "manual"}, headers=T))
    ok(c.delete(sw + "/routes/1?both_ways=true", headers=T), 204)
    ok(c.delete(sw + "/routes/3", headers=T), 204)
    assert ok(c.get(net, headers=T))["switches"][0]["routes"] == []


def test_manual_vlink_paths_and_spf_backups(ring: dict[str, Any]) -> None:
    c, T, net, big, v3, v4 = (ring[k] for k in ("c", "T", "net", "big", "v3", "v4"))
    body = {"src_vdpid": big["vdpid"], "src_vport": 3, "dst_vdpid": v3, "dst_vport": 1}
    lk = ok(c.post(net + "/links", json={**body, "algorithm": "manual"}, headers=T), 201)
    assert (lk["algorithm"], lk["paths"], lk["path"], lk["backup_paths"]) == (
        "manual",
        [],
        None,  # down until a path is set
        [],
    )
    paths = f"{net}/links/{lk['id']}/paths"
    lk = ok(c.put(paths + "/100", json={"path": "2/3-3/2"}, headers=T))
    assert lk["path"] == hops("2/3-3/2") and lk["backup_paths"] == []
    around = hops("2/2-1/2", "1/3-4/3", "4/2-3/3")
    lk = ok(c.put(paths + "/50", json={"path": around}, headers=T))
    assert lk["paths"] == [
        {"priority": 100, "path": hops("2/3-3/2"), "live": True},
        {"priority": 50, "path": around, "live": True},
    ]
    assert (lk["path"], lk["backup_paths"]) == (hops("2/3-3/2"), [around])
    # given from the dst end, stored src -> dst; the same priority replaces
    lk = ok(c.put(paths + "/100", json={"path": "3/2-2/3"}, headers=T))
    assert [p["priority"] for p in lk["paths"]] == [100, 50]
    ok(c.delete(paths + "/100", headers=T), 204)
    vn = ok(c.get(net, headers=T))
    assert vn["links"][0]["path"] == around and vn["links"][0]["backup_paths"] == []

    # spf with a backup: the direct link, then the rest of the ring
    body = {"src_vdpid": v3, "src_vport": 2, "dst_vdpid": v4, "dst_vport": 1, "backup_num": 1}
    lk2 = ok(c.post(net + "/links", json=body, headers=T), 201)
    assert (lk2["algorithm"], lk2["backup_num"], lk2["paths"]) == ("spf", 1, [])
    assert lk2["path"] == hops("3/3-4/2")
    assert lk2["backup_paths"] == [hops("3/2-2/3", "2/2-1/2", "1/3-4/3")]


def test_big_switch_and_path_refusals_change_nothing(
    ring: dict[str, Any], ring_manager: NetworkManager
) -> None:
    c, T, net, big, v3 = (ring[k] for k in ("c", "T", "net", "big", "v3"))
    sw = f"/switches/{big['vdpid']}"

    def no(method: str, path: str, body: Any = None) -> Any:
        return refused(c, ring_manager, method, net + path, T, body)

    other = ok(c.post("/v1/networks", json={}, headers=T), 201)["id"]
    code, msg = refused(
        c, ring_manager, "POST", f"/v1/networks/{other}/switches", T, {"dpids": [4, 5]}
    )
    assert code == 400 and "OpenFlow 1.0" in msg
    assert no("POST", "/switches", {"dpids": [3, 2]})[0] == 409  # r2 is the big switch's
    code, msg = no("PUT", sw + "/routing", {"algorithm": "spf", "backup_num": 9})
    assert (code, msg) == (400, "backup_num 9 is out of range 0-8")
    assert no("PUT", sw + "/routing", {"algorithm": "bgp"})[0] == 400
    assert no("PUT", sw + "/routing", {"backup_num": 1})[0] == 422
    assert no("PUT", f"/switches/{v3}/routing", {"algorithm": "spf"})[0] == 400  # not big
    route = {"src_vport": 1, "dst_vport": 2, "path": "1/2-2/2", "priority": 10}
    code, msg = no("POST", sw + "/routes", {**route, "path": "1/2-2"})
    assert code == 400 and "bad hop" in msg
    code, msg = no("POST", sw + "/routes", {**route, "path": "1/3-4/3,4/2-3/3,3/2-2/3"})
    assert code == 400 and "not part of big switch" in msg
    assert no("POST", sw + "/routes", {**route, "priority": 1 << 16})[0] == 400
    assert no("POST", sw + "/routes", {**route, "path": 12})[0] == 422
    assert no("POST", sw + "/routes", {**route, "path": [{"src_dpid": 1}]})[0] == 422
    assert no("POST", sw + "/routes", {**route, "both": True})[0] == 422
    assert no("POST", sw + "/routes", {**route, "dst_vport": 9})[0] == 404
    assert no("DELETE", sw + "/routes/4")[0] == 404
    link = {"src_vdpid": big["vdpid"], "src_vport": 3, "dst_vdpid": v3, "dst_vport": 1}
    assert no("POST", "/links", {**link, "algorithm": "shortest"})[0] == 400
    assert no("POST", "/links", {**link, "backup_num": -1})[0] == 400
    lk = ok(c.post(net + "/links", json=link, headers=T), 201)  # spf
    code, msg = no("PUT", f"/links/{lk['id']}/paths/1", {"path": "2/3-3/2"})
    assert code == 400 and "algorithm manual" in msg
    ok(c.delete(f"{net}/links/{lk['id']}", headers=T), 204)
    lk = ok(c.post(net + "/links", json={**link, "algorithm": "manual"}, headers=T), 201)
    paths = f"/links/{lk['id']}/paths"
    code, msg = no("PUT", paths + "/1", {"path": "2/2-1/2"})
    assert code == 400 and "must end on pswitch 3" in msg
    assert no("PUT", paths + "/70000", {"path": "2/3-3/2"})[0] == 400
    assert no("PUT", paths + "/1", {"path": "2/3-3/2", "priority": 1})[0] == 422
    assert no("PUT", "/links/77/paths/1", {"path": "2/3-3/2"})[0] == 404
    assert no("DELETE", paths + "/1")[0] == 404


# --- the scalability level (Libera's flow-rule reduction), the tenant's choice per network -----
@pytest.mark.parametrize("level", ["exact", "app", "host", "hop", "lite"])
def test_create_network_with_each_scalability_level(
    client: TestClient, manager: NetworkManager, level: str
) -> None:
    T = new_tenant(client, "alice")
    net = ok(client.post("/v1/networks", json={"scalability": level}, headers=T), 201)
    assert net["scalability"] == level == manager.networks[net["id"]].scalability
    assert ok(client.get(f"/v1/networks/{net['id']}", headers=T))["scalability"] == level


def test_set_scalability(client: TestClient, manager: NetworkManager) -> None:
    T = new_tenant(client, "alice")
    n = ok(client.post("/v1/networks", json={"controller_urls": []}, headers=T), 201)["id"]
    path = f"/v1/networks/{n}/scalability"
    events: list[tuple[str, str]] = []
    manager.listeners.append(lambda ev, net: events.append((ev, net.scalability)))

    # not started: kept, nothing announced
    net = ok(client.put(path, json={"level": "hop"}, headers=T))
    assert net["id"] == n and net["scalability"] == "hop" and net["started"] is False
    assert manager.networks[n].scalability == "hop" and events == []

    # started: announced "changed", as every change of a started network is
    ok(client.post(f"/v1/networks/{n}/start", headers=T))
    assert ok(client.put(path, json={"level": "lite"}, headers=T))["scalability"] == "lite"
    assert events == [("started", "hop"), ("changed", "lite")]
    ok(client.put(path, json={"level": "lite"}, headers=T))  # the same level: nothing
    assert events == [("started", "hop"), ("changed", "lite")]

    # the admin may set any network's level
    admin_put = client.put(path, json={"level": "app"}, headers=bearer(ADMIN))
    assert ok(admin_put)["scalability"] == "app"

    # refusals change nothing
    def no(body: Any, headers: dict[str, str] = T, at: str = path, method: str = "PUT") -> Any:
        return refused(client, manager, method, at, headers, body)

    code, msg = no({"level": "fastest"})
    assert code == 400
    assert msg == "scalability level 'fastest': expected one of exact, app, host, hop, lite"
    assert no({"level": "HOP"})[0] == 400
    assert no({"level": ""})[0] == 400
    assert no({"level": 2})[0] == 422
    assert no({"level": True})[0] == 422
    assert no({"level": None})[0] == 422
    assert no({})[0] == 422
    assert no({"scalability": "hop"})[0] == 422  # unknown field: a typo
    assert no({"level": "hop", "x": 1})[0] == 422
    assert no(["hop"])[0] == 422
    assert refused(client, manager, "PUT", path, T, content=b'{"level": ')[0] == 400
    assert no({"level": "hop"}, headers={})[0] == 401
    assert no({"level": "hop"}, headers=bearer("wrong"))[0] == 401
    missing = "/v1/networks/99/scalability"
    assert no({"level": "hop"}, at=missing) == (404, "no virtual network 99")
    assert no({"level": "hop"}, at="/v1/networks/x/scalability")[0] == 422
    assert no({"level": "hop"}, method="POST")[0] == 405
    # another tenant's network looks exactly like a missing one
    B = new_tenant(client, "bob")
    assert no({"level": "hop"}, headers=B) == (404, f"no virtual network {n}")
    assert events == [("started", "hop"), ("changed", "lite"), ("changed", "app")]


def test_openapi_describes_the_scalability_level(client: TestClient) -> None:
    spec = ok(client.get("/openapi.json"))
    put = spec["paths"]["/v1/networks/{net_id}/scalability"]["put"]
    assert put["tags"] == ["networks"] and "reduction level" in put["description"]
    assert put["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NetworkOut"
    }
    for code in ("400", "401", "403", "404", "409", "422"):
        assert code in put["responses"], code
    schemas = spec["components"]["schemas"]
    body = schemas["ScalabilitySet"]
    assert body["required"] == ["level"] and body["additionalProperties"] is False
    for model in ("ScalabilitySet", "NetworkCreate"):
        props = schemas[model]["properties"]
        text = props["level" if model == "ScalabilitySet" else "scalability"]["description"]
        assert all(level in text for level in ("exact", "app", "host", "hop", "lite")), model


def test_exclusive_vports_over_rest(client: TestClient, manager: NetworkManager) -> None:
    """An exclusive vport takes s1 port 2 for alice: bob's vport there is 409 (without
    naming alice's network), as is alice's exclusive vport on a port bob already uses; the
    mode shows in the reply and the network; only JSON true/false is a mode."""
    nets = []
    for name in ("alice", "bob"):
        T = new_tenant(client, name)
        n = ok(client.post("/v1/networks", json={}, headers=T), 201)["id"]
        ok(client.post(f"/v1/networks/{n}/switches", json={"dpids": [1]}, headers=T), 201)
        nets.append((T, n))
    (Ta, na), (Tb, nb) = nets
    body = {"dpid": 1, "port": 2, "exclusive": True}
    vp = ok(client.post(f"/v1/networks/{na}/ports", json=body, headers=Ta), 201)
    assert (vp["kind"], vp["exclusive"]) == ("edge", True)
    ports = ok(client.get(f"/v1/networks/{na}", headers=Ta))["switches"][0]["ports"]
    assert [p["exclusive"] for p in ports] == [True]
    code, msg = refused(client, manager, "POST", f"/v1/networks/{nb}/ports", Tb,
                        {"dpid": 1, "port": 2})  # fmt: skip
    assert code == 409 and "held exclusively by a vport of another network" in msg
    assert f"network {na}" not in msg and "vswitch" not in msg
    ok(client.post(f"/v1/networks/{nb}/ports", json={"dpid": 1, "port": 1}, headers=Tb), 201)
    code, msg = refused(client, manager, "POST", f"/v1/networks/{na}/ports", Ta,
                        {"dpid": 1, "port": 1, "exclusive": True})  # fmt: skip
    assert code == 409 and "no other vport" in msg
    code, msg = refused(client, manager, "POST", f"/v1/networks/{na}/ports", Ta,
                        {"dpid": 1, "port": 3, "exclusive": True})  # fmt: skip
    assert code == 400 and "faces another pswitch" in msg
    for bad in ("yes", 1, None):
        code, _ = refused(client, manager, "POST", f"/v1/networks/{na}/ports", Ta,
                          {"dpid": 1, "port": 1, "exclusive": bad})  # fmt: skip
        assert code == 422
    # a host of bob's moved there by the admin: refused too
    h = {"vdpid": ok(client.get(f"/v1/networks/{nb}", headers=Tb))["switches"][0]["vdpid"],
         "vport": 1, "mac": "02:00:00:00:00:01"}  # fmt: skip
    hid = ok(client.post(f"/v1/networks/{nb}/hosts", json=h, headers=Tb), 201)["id"]
    code, msg = refused(client, manager, "POST", f"/v1/networks/{nb}/hosts/{hid}/move",
                        bearer(ADMIN), {"dpid": 1, "port": 2})  # fmt: skip
    assert code == 409 and "held exclusively" in msg


def _one_host(
    client: TestClient, T: dict[str, str], mac: str, start: bool = False
) -> tuple[int, dict[str, Any], dict[str, Any], int]:
    """A network of the tenant's: a vswitch on pswitch 1, vport 1 on its port 1 with one
    host; (network, vswitch, vport, host id)."""
    n = ok(client.post("/v1/networks", json={}, headers=T), 201)["id"]
    vd = ok(client.post(f"/v1/networks/{n}/switches", json={"dpids": [1]}, headers=T), 201)
    vp = ok(client.post(f"/v1/networks/{n}/ports", json={"dpid": 1, "port": 1}, headers=T), 201)
    h = {"vdpid": vd["vdpid"], "vport": vp["number"], "mac": mac}
    hid = ok(client.post(f"/v1/networks/{n}/hosts", json=h, headers=T), 201)["id"]
    if start:
        ok(client.post(f"/v1/networks/{n}/start", headers=T))
    return n, vd, vp, hid


def test_a_host_is_read_alone_its_location_for_the_admin_only(
    client: TestClient, manager: NetworkManager
) -> None:
    """GET .../hosts/{id}: what an orchestrator polls for a detected move (the network's
    whole view is far bigger).  Its tenant sees its virtual place only, the admin where it
    is too; another tenant and a host that is not there get 404."""
    Ta, Tb = new_tenant(client, "alice"), new_tenant(client, "bob")
    n, vd, vp, hid = _one_host(client, Ta, "02:00:00:00:00:0a")
    path = f"/v1/networks/{n}/hosts/{hid}"
    ok(client.post(f"{path}/move", json={"dpid": 1, "port": 2}, headers=bearer(ADMIN)))
    mine = ok(client.get(path, headers=Ta))
    assert mine == {"id": hid, "vdpid": vd["vdpid"], "vport": vp["number"],
                    "mac": "02:00:00:00:00:0a", "location": None}  # fmt: skip
    assert ok(client.get(path, headers=bearer(ADMIN)))["location"] == {"dpid": 1, "port": 2}
    assert client.get(path, headers=Tb).status_code == 404
    assert client.get(f"/v1/networks/{n}/hosts/{hid + 1}", headers=Ta).status_code == 404
    assert client.get(f"/v1/networks/{n}/hosts/x", headers=Ta).status_code == 422


def test_a_moves_reply_waits_one_turn_of_the_event_loop(
    client: TestClient, manager: NetworkManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the move set going in the event loop (in the daemon: the BARRIER replies that
    start its next phase) runs before the reply to the orchestrator is built."""
    import asyncio

    from tenantvisor.api import schemas

    order: list[str] = []
    n, _, _, hid = _one_host(client, new_tenant(client, "carol"), "02:00:00:00:00:0c", True)

    def listener(event: str, net: object) -> None:
        asyncio.get_running_loop().call_soon(order.append, "loop turn")

    monkeypatch.setattr(manager, "listeners", [*manager.listeners, listener])
    real = schemas.host_out
    monkeypatch.setattr(
        schemas, "host_out", lambda *a, **kw: order.append("reply") or real(*a, **kw)
    )
    body = {"dpid": 1, "port": 2}
    ok(client.post(f"/v1/networks/{n}/hosts/{hid}/move", json=body, headers=bearer(ADMIN)))
    assert order == ["loop turn", "reply"]


def test_a_moves_reply_waits_for_the_network_to_follow_the_host(
    manager: NetworkManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the daemon's `rolled_out`: the reply comes once the network's rollout is over
    (here: when the test ends it), or after MOVE_REPLY_WAIT if a pswitch never answers,
    the move made either way."""
    import asyncio

    from tenantvisor.api import rest

    order: list[str] = []
    asked: list[int] = []

    def rolled_out(net_id: int) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not asked:  # the first move's rollout ends 50 ms later, the second's never
            loop.call_later(0.05, lambda: order.append("rolled out") or fut.set_result(None))
        asked.append(net_id)
        return fut

    monkeypatch.setattr(rest, "MOVE_REPLY_WAIT", 0.2)
    with quiet_testclient()(create_app(manager, rolled_out=rolled_out)) as client:
        T = new_tenant(client, "dave")
        n, _, _, hid = _one_host(client, T, "02:00:00:00:00:0d", start=True)
        path = f"/v1/networks/{n}/hosts/{hid}/move"
        got = ok(client.post(path, json={"dpid": 1, "port": 2}, headers=bearer(ADMIN)))
        order.append("reply")
        assert order == ["rolled out", "reply"] and got["location"] == {"dpid": 1, "port": 2}
        t0 = time.monotonic()
        got = ok(client.post(path, json={"dpid": 3, "port": 1}, headers=bearer(ADMIN)))
        assert 0.15 < time.monotonic() - t0 < 5 and got["location"] == {"dpid": 3, "port": 1}
        assert manager.networks[n].hosts[hid].location == (3, 1)


def test_openapi_describes_the_exclusive_mode(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    prop = spec["components"]["schemas"]["PortCreate"]["properties"]["exclusive"]
    assert prop["type"] == "boolean" and prop["default"] is False
    assert "any source MAC" in prop["description"]


# --- data-plane limits (issue 11) -------------------------------------------------------------
def test_the_admin_sets_a_networks_limits_and_its_tenant_only_reads_them(
    manager: NetworkManager,
) -> None:
    """PUT is the admin's (the limits protect the other tenants); the tenant reads its own
    limits and meters, without the physical meter ids; another tenant gets 404."""
    from tenantvisor.virtual.model import Limits

    manager.default_limits = Limits(vport_pps=2000, vlink_kbps=50000)
    hits = [
        {"kind": "vlink", "link_id": 1, "direction": "src->dst", "rate": 300, "unit": "pps",
         "packets": 900, "dropped": 600, "dpid": 3, "meter_id": 7},
    ]  # fmt: skip
    app = create_app(manager, limits=lambda net_id: hits if net_id == 1 else [])
    with quiet_testclient()(app) as client:
        T = new_tenant(client, "alice")
        other = new_tenant(client, "bob")
        n = ok(client.post("/v1/networks", json={}, headers=T), 201)["id"]
        got = ok(client.get(f"/v1/networks/{n}/limits", headers=T))
        assert got["override"] == {}
        assert got["defaults"] == got["effective"] == {
            "vport_pps": 2000, "vport_kbps": 0, "vlink_pps": 0, "vlink_kbps": 50000,
        }  # fmt: skip
        assert got["dropped"] == 600
        (m,) = got["meters"]
        assert m["dpid"] is None and m["meter_id"] is None  # the provider's ids, not shown
        assert (m["kind"], m["link_id"], m["dropped"]) == ("vlink", 1, 600)
        code, _ = refused(client, manager, "PUT", f"/v1/networks/{n}/limits", T, {"vlink_pps": 1})
        assert code == 403
        assert client.get(f"/v1/networks/{n}/limits", headers=other).status_code == 404
        A = bearer(ADMIN)
        got = ok(client.put(f"/v1/networks/{n}/limits", json={"vlink_pps": 300}, headers=A))
        assert got["override"] == {"vlink_pps": 300}
        assert got["effective"] == {"vport_pps": 2000, "vport_kbps": 0, "vlink_pps": 300,
                                    "vlink_kbps": 0}  # fmt: skip
        assert got["meters"][0]["meter_id"] == 7  # the admin sees where it is
        assert manager.networks[n].limits == Limits(vlink_pps=300)
        for bad, status in (({"vport_pps": 1, "vport_kbps": 1}, 400), ({"vport_pps": -1}, 422),
                            ({"vport_pps": "1"}, 422), ({"vlan_pps": 1}, 422)):  # fmt: skip
            code, _ = refused(client, manager, "PUT", f"/v1/networks/{n}/limits", A, bad)
            assert code == status, bad
        ok(client.put(f"/v1/networks/{n}/limits", json={}, headers=A))
        assert manager.networks[n].limits == Limits()
