"""Tenant quotas over REST, JSON-RPC and tvctl: 403 naming the quota, the admin's own
values per tenant, who may read them, and what the daemon's run-time side adds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tenantvisor.api.app import create_app
from tenantvisor.quotas import KEYS, TenantLimits
from tenantvisor.virtual.manager import NetworkManager

from .conftest import ADMIN, LiveServer, bearer, build_topology, quiet_testclient, snapshot
from .test_tvctl import Cli

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def _usage(tenant_id: int) -> dict[str, Any]:
    """What the daemon's vswitches would add (Hypervisor.tenant_usage)."""
    return {
        "used": {"rules": 12, "groups": 1, "meters": 0},
        "refused": {"rules": 4},
        "counters": {"messages": 1000.0, "messages_delayed": 200.0, "packet_ins_dropped": 7.0},
    }


@pytest.fixture
def small() -> NetworkManager:
    return NetworkManager(build_topology(), ADMIN, TenantLimits(vswitches=1, hosts=1, networks=2))


@pytest.fixture
def qclient(small: NetworkManager) -> Any:
    with quiet_testclient()(create_app(small, usage=_usage)) as c:
        yield c


def _tenant(c: TestClient, name: str) -> tuple[int, dict[str, str]]:
    t = c.post("/v1/tenants", json={"name": name}, headers=bearer(ADMIN)).json()
    return t["id"], bearer(t["token"])


def test_one_vswitch_more_than_the_quota_is_403_naming_it_and_changes_nothing(
    qclient: TestClient, small: NetworkManager
) -> None:
    tid, tok = _tenant(qclient, "alice")
    net = qclient.post("/v1/networks", json={}, headers=tok).json()["id"]
    assert qclient.post(f"/v1/networks/{net}/switches", json={"dpids": [1]}, headers=tok).is_success
    before = snapshot(small)
    r = qclient.post(f"/v1/networks/{net}/switches", json={"dpids": [2]}, headers=tok)
    assert r.status_code == 403
    assert r.json()["error"].startswith(
        "quota vswitches exceeded: tenant alice holds 1 vswitches, its quota is 1"
    )
    assert snapshot(small) == before
    # the OpenVirteX API says the same, with the status in its error's data
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "createSwitch",
           "params": {"tenantId": net, "dpids": [3]}}  # fmt: skip
    err = qclient.post("/tenant", json=rpc, headers=tok).json()["error"]
    assert err["code"] == -32602 and "quota vswitches" in err["message"]
    assert err["data"] == {"http_status": 403, "kind": "QuotaExceeded"}
    got = qclient.get(f"/v1/tenants/{tid}/quotas", headers=tok).json()
    assert got["limits"]["vswitches"] == {
        "limit": 1, "default": 1, "own": False, "used": 1, "refused": 2,
        "description": got["limits"]["vswitches"]["description"],
    }  # fmt: skip


def test_the_admin_sets_a_tenants_own_limits_and_they_replace_the_previous(
    qclient: TestClient, small: NetworkManager
) -> None:
    tid, tok = _tenant(qclient, "alice")
    net = qclient.post("/v1/networks", json={}, headers=tok).json()["id"]
    qclient.post(f"/v1/networks/{net}/switches", json={"dpids": [1]}, headers=tok)
    r = qclient.put(f"/v1/tenants/{tid}/quotas", json={"vswitches": 3, "msg_rate": 500},
                    headers=bearer(ADMIN))  # fmt: skip
    assert r.status_code == 200
    lim = r.json()["limits"]
    assert (lim["vswitches"]["limit"], lim["vswitches"]["own"]) == (3, True)
    assert (lim["msg_rate"]["limit"], lim["msg_rate"]["default"]) == (500, 5000)
    assert lim["msg_rate"]["used"] is None  # a rate, not a quota
    assert small.tenants[tid].limits == {"vswitches": 3, "msg_rate": 500}
    assert qclient.post(f"/v1/networks/{net}/switches", json={"dpids": [2]}, headers=tok).is_success
    # PUT replaces: what is left out (or null) is the default again
    r = qclient.put(f"/v1/tenants/{tid}/quotas", json={"hosts": 5, "msg_rate": None},
                    headers=bearer(ADMIN))  # fmt: skip
    assert small.tenants[tid].limits == {"hosts": 5}
    assert r.json()["limits"]["vswitches"] == {**r.json()["limits"]["vswitches"], "limit": 1,
                                               "own": False, "used": 2}  # fmt: skip
    # the run-time side (rules, groups, meters, rate counters) comes from the daemon
    got = r.json()
    assert got["limits"]["rules"]["used"] == 12 and got["limits"]["rules"]["refused"] == 4
    assert got["counters"]["messages_delayed"] == 200.0
    assert set(got["limits"]) == set(KEYS)


@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        ({"vswitch": 3}, 400, "unknown limit 'vswitch'"),
        ({"msg_rate": 0}, 400, "msg_rate must be within 1-"),
        ({"rules": -1}, 400, "rules must be within 0-"),
        ({"rules": "9"}, 422, "rules"),
        ({"rules": 1.5}, 422, "rules"),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_limits_are_refused_and_change_nothing(
    qclient: TestClient, small: NetworkManager, body: Any, status: int, why: str
) -> None:
    tid, _ = _tenant(qclient, "alice")
    before = snapshot(small)
    r = qclient.put(f"/v1/tenants/{tid}/quotas", json=body, headers=bearer(ADMIN))
    assert r.status_code == status and why in r.json()["error"], r.json()
    assert snapshot(small) == before


def test_who_may_read_and_set_quotas(qclient: TestClient) -> None:
    alice, atok = _tenant(qclient, "alice")
    bob, _ = _tenant(qclient, "bob")
    assert qclient.get("/v1/quotas", headers=atok).json()["tenant"] == "alice"
    assert qclient.get(f"/v1/tenants/{alice}/quotas", headers=atok).status_code == 200
    r = qclient.get(f"/v1/tenants/{bob}/quotas", headers=atok)
    assert r.status_code == 403 and "own quotas" in r.json()["error"]
    assert qclient.put(f"/v1/tenants/{alice}/quotas", json={}, headers=atok).status_code == 403
    assert qclient.get("/v1/tenants/99/quotas", headers=bearer(ADMIN)).status_code == 404
    defaults = qclient.get("/v1/quotas", headers=bearer(ADMIN)).json()
    assert defaults["tenant_id"] is None and defaults["limits"]["vswitches"]["limit"] == 1
    assert defaults["limits"]["vswitches"]["used"] is None


def test_tvctl_tenant_quota(small: NetworkManager, capsys: pytest.CaptureFixture[str]) -> None:
    with LiveServer(small) as live:
        cli = Cli(live, capsys)
        tok = cli.json(ADMIN, "tenant-add", "alice")["token"]
        n = str(cli.json(tok, "net-add")["id"])
        cli.ok(tok, "switch-add", n, "1")
        assert "quota vswitches exceeded" in cli.fails(tok, "switch-add", n, "2")
        table = cli.ok(ADMIN, "tenant-quota", "alice")
        assert "alice (id 1)" in table
        row = next(line.split() for line in table.splitlines() if line.startswith("vswitches"))
        assert row == ["vswitches", "1", "1", "false", "1", "1"]  # value default own used refused
        got = cli.json(ADMIN, "tenant-quota", "alice", "--set", "vswitches=4", "--set",
                       "msg_rate=900")  # fmt: skip
        assert got["limits"]["vswitches"]["limit"] == 4 and got["limits"]["msg_rate"]["own"]
        cli.ok(tok, "switch-add", n, "2")
        got = cli.json(ADMIN, "tenant-quota", "1", "--reset", "msg_rate")
        assert small.tenants[1].limits == {"vswitches": 4} and not got["limits"]["msg_rate"]["own"]
        assert cli.json(tok, "tenant-quota")["tenant"] == "alice"  # a tenant: its own
        assert "needs the admin token" in cli.fails(tok, "tenant-quota", "1", "--set", "hosts=2")
        assert "not a whole number" in cli.fails(ADMIN, "tenant-quota", "1", "--set", "hosts=x")
        assert "unknown limit" in cli.fails(ADMIN, "tenant-quota", "1", "--reset", "host")
        assert "no tenant named" in cli.fails(ADMIN, "tenant-quota", "carol")
        cli.ok(ADMIN, "tenant-quota", "alice", "--reset", "all")
        assert small.tenants[1].limits == {}
        assert "defaults" in cli.ok(ADMIN, "tenant-quota")
