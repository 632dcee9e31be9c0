"""Authentication and tenant isolation at the API edge."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest

from tenantvisor.virtual.manager import NetworkManager
from tests.api.conftest import ADMIN, bearer, snapshot

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_no_token_is_401_with_basic_challenge(client: TestClient) -> None:
    r = client.get("/v1/networks")
    assert r.status_code == 401
    assert "token" in r.json()["error"]
    # urllib's HTTPBasicAuthHandler (ovxctl) only answers a Basic challenge, read last.
    assert r.headers["www-authenticate"].endswith('Basic realm="tenantvisor"')


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Token " + ADMIN},
        basic("admin", "wrong"),
        basic("admin", ""),
        {"Authorization": "Basic %%%not-base64"},
    ],
)
def test_wrong_credentials_are_401(client: TestClient, header: dict[str, str]) -> None:
    r = client.get("/v1/physical/topology", headers=header)
    assert r.status_code == 401
    assert set(r.json()) == {"error"}


def test_bearer_admin(client: TestClient) -> None:
    assert client.get("/v1/tenants", headers=bearer(ADMIN)).status_code == 200


def test_basic_as_ovxctl_sends_it(client: TestClient, manager: NetworkManager) -> None:
    """ovxctl: `-u admin` (or any name) and the token as password; user name is ignored."""
    assert client.get("/v1/tenants", headers=basic("admin", ADMIN)).status_code == 200
    t = manager.create_tenant("alice")
    r = client.get("/v1/networks", headers=basic("whoever", t.token))
    assert r.status_code == 200
    # the password may contain ':'; only the first one separates the user name
    r = client.get("/v1/networks", auth=("u", t.token))
    assert r.status_code == 200


def test_tenant_token_cannot_manage_tenants(client: TestClient, manager: NetworkManager) -> None:
    t = manager.create_tenant("alice")
    before = snapshot(manager)
    for method, path, body in [
        ("POST", "/v1/tenants", {"name": "mallory"}),
        ("GET", "/v1/tenants", None),
        ("GET", f"/v1/tenants/{t.id}", None),
        ("DELETE", f"/v1/tenants/{t.id}", None),
        ("GET", "/v1/status", None),
    ]:
        r = client.request(method, path, json=body, headers=bearer(t.token))
        assert r.status_code == 403, (method, path)
        assert "admin" in r.json()["error"]
    assert snapshot(manager) == before


def test_deleted_tenant_token_stops_working(client: TestClient, manager: NetworkManager) -> None:
    t = manager.create_tenant("alice")
    assert client.get("/v1/networks", headers=bearer(t.token)).status_code == 200
    assert client.delete(f"/v1/tenants/{t.id}", headers=bearer(ADMIN)).status_code == 204
    assert client.get("/v1/networks", headers=bearer(t.token)).status_code == 401


def test_tenant_a_cannot_see_or_touch_tenant_b(client: TestClient, manager: NetworkManager) -> None:
    a = manager.create_tenant("alice")
    b = manager.create_tenant("bob")
    net_b = manager.create_network(b.id, ["tcp:127.0.0.1:6653"])
    sw = manager.create_switch(net_b.id, [1])
    vp = manager.create_port(net_b.id, 1, 1)
    h = manager.connect_host(net_b.id, sw.vdpid, vp.number, "00:00:00:00:00:01")
    before = snapshot(manager)
    A = bearer(a.token)
    n = net_b.id
    attempts: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/networks/{n}", None),
        ("DELETE", f"/v1/networks/{n}", None),
        ("POST", f"/v1/networks/{n}/start", None),
        ("POST", f"/v1/networks/{n}/stop", None),
        ("PUT", f"/v1/networks/{n}/controllers", {"controller_urls": []}),
        ("POST", f"/v1/networks/{n}/switches", {"dpids": [2]}),
        ("DELETE", f"/v1/networks/{n}/switches/{sw.vdpid}", None),
        ("POST", f"/v1/networks/{n}/ports", {"dpid": 1, "port": 2}),
        ("DELETE", f"/v1/networks/{n}/switches/{sw.vdpid}/ports/{vp.number}", None),
        (
            "POST",
            f"/v1/networks/{n}/hosts",
            {"vdpid": sw.vdpid, "vport": 1, "mac": "02:00:00:00:00:09"},
        ),
        ("DELETE", f"/v1/networks/{n}/hosts/{h.id}", None),
        ("DELETE", f"/v1/networks/{n}/links/1", None),
    ]
    for method, path, body in attempts:
        r = client.request(method, path, json=body, headers=A)
        assert r.status_code == 404, (method, path, r.json())
        # exactly what a missing network says: ids of others are not even confirmed
        assert r.json() == {"error": f"no virtual network {n}"}
    assert client.get("/v1/networks", headers=A).json() == []
    assert [x["id"] for x in client.get("/v1/networks", headers=bearer(b.token)).json()] == [n]
    assert snapshot(manager) == before
    # the admin sees every network
    assert client.get(f"/v1/networks/{n}", headers=bearer(ADMIN)).status_code == 200


def test_network_owner_rules(client: TestClient, manager: NetworkManager) -> None:
    a = manager.create_tenant("alice")
    b = manager.create_tenant("bob")
    before = snapshot(manager)
    r = client.post("/v1/networks", json={"tenant_id": b.id}, headers=bearer(a.token))
    assert r.status_code == 403
    r = client.post("/v1/networks", json={}, headers=bearer(ADMIN))
    assert r.status_code == 400 and "tenant_id" in r.json()["error"]
    r = client.post("/v1/networks", json={"tenant_id": 99}, headers=bearer(ADMIN))
    assert r.status_code == 404
    assert snapshot(manager) == before
    # a tenant may name itself; the admin may name anyone
    r = client.post("/v1/networks", json={"tenant_id": a.id}, headers=bearer(a.token))
    assert r.status_code == 201 and r.json()["tenant_id"] == a.id
    r = client.post("/v1/networks", json={"tenant_id": b.id}, headers=bearer(ADMIN))
    assert r.status_code == 201 and r.json()["tenant_id"] == b.id
